"""Policy values (``rules/policy.yaml``), typed and checked at start-up."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml


class PolicyError(ValueError):
    """A policy file is missing a value, has an unknown key, or a value out of range."""


@dataclass(frozen=True, kw_only=True)
class DefaultUln:
    alt_u_per_l: float
    ast_u_per_l: float
    bilirubin_mg_per_dl: float
    bilirubin_umol_per_l: float


# Severities that are local policy, where reasonable clinicians differ (rules/README.md, "uncertain").
_INDICATOR_CHOICES = (
    "hepatic_contraindication_indicator",
    "ldn_hepatic_indicator",
    "ldn_recent_short_acting_opioid_indicator",
    "single_opioid_dose_indicator",
)


@dataclass(frozen=True, kw_only=True)
class Policy:
    washout_days_short_acting: int
    washout_days_long_acting: int
    depot_exposure_days: int
    depot_buprenorphine_exposure_days: int
    unknown_supply_days: int
    withdrawal_lookback_days: int
    pregnancy_max_days: int
    decompensation_lookback_days: int
    stale_active_prescription_is_current: bool
    opioid_exposure_lookback_days: int
    uds_positive_lookback_days: int
    uds_recent_days: int
    naloxone_challenge_lookback_days: int
    lft_lookback_days: int
    hcg_lookback_days: int
    hcg_residual_days: int
    prior_naltrexone_days: int
    continuation_grace_days_oral: int
    continuation_days_injection: int
    naloxone_rescue_lookback_days: int
    ldn_history_days: int
    blockade_days_oral: int
    blockade_days_injection: int
    procedure_window_days_oral: int
    procedure_window_days_injection: int
    procedure_window_days_low_dose: int
    lft_warning_uln_multiple: float
    lft_critical_uln_multiple: float
    bilirubin_uln_multiple_with_lft: float
    default_uln: DefaultUln
    hepatic_contraindication_indicator: Literal["critical", "warning"]
    ldn_hepatic_indicator: Literal["critical", "warning"]
    ldn_recent_short_acting_opioid_indicator: Literal["critical", "warning"]
    single_opioid_dose_indicator: Literal["critical", "warning"]
    low_dose_ceiling_mg: float
    ldn_start_dose_mg: float
    ldn_step_mg: float
    ldn_step_min_days: int
    ldn_max_dose_mg: float

    def __post_init__(self) -> None:
        problems = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value <= 0:
                problems.append(f"{f.name} must be positive")
        for name in _INDICATOR_CHOICES:
            if getattr(self, name) not in ("critical", "warning"):
                problems.append(f"{name} must be critical or warning")
        if self.lft_critical_uln_multiple < self.lft_warning_uln_multiple:
            problems.append("lft_critical_uln_multiple must not be below lft_warning_uln_multiple")
        if not self.ldn_start_dose_mg <= self.ldn_max_dose_mg <= self.low_dose_ceiling_mg:
            problems.append("need ldn_start_dose_mg <= ldn_max_dose_mg <= low_dose_ceiling_mg")
        if problems:
            raise PolicyError("; ".join(problems))

    def washout_days(self, *, long_acting: bool) -> int:
        return self.washout_days_long_acting if long_acting else self.washout_days_short_acting

    def as_template_values(self) -> dict[str, Any]:
        """Flat name -> value map, for ``{{name}}`` placeholders in rule conditions and texts."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "default_uln"}
        values.update({f"default_uln_{k}": v for k, v in dataclasses.asdict(self.default_uln).items()})
        return values


def load_policy(rules_dir: Path, override_file: Path | None = None) -> Policy:
    data = _read(rules_dir / "policy.yaml")
    if override_file is not None:
        overrides = _read(override_file)
        unknown = set(overrides) - set(data)
        if unknown:
            raise PolicyError(f"{override_file}: unknown policy keys {sorted(unknown)}")
        for key, value in overrides.items():
            data[key] = {**data[key], **value} if key == "default_uln" else value
    names = {f.name for f in dataclasses.fields(Policy)}
    if set(data) != names:
        raise PolicyError(f"policy keys differ from the expected ones: {sorted(set(data) ^ names)}")
    try:
        data["default_uln"] = DefaultUln(**data["default_uln"])
        policy = Policy(**data)
    except TypeError as exc:
        raise PolicyError(str(exc)) from exc
    _check_types(policy)
    return policy


def _read(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise PolicyError(f"{path}: {exc}") from exc
    if not isinstance(data, dict):
        raise PolicyError(f"{path} must be a mapping of policy names to values")
    return data


def _check_types(policy: Policy) -> None:
    for f in dataclasses.fields(policy):
        value = getattr(policy, f.name)
        expected = str(f.type)
        if expected == "int" and (isinstance(value, bool) or not isinstance(value, int)):
            raise PolicyError(f"{f.name} must be a whole number, not {value!r}")
        if expected == "float" and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise PolicyError(f"{f.name} must be a number, not {value!r}")
        if expected == "bool" and not isinstance(value, bool):
            raise PolicyError(f"{f.name} must be true or false, not {value!r}")
