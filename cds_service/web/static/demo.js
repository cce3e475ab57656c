// The demo page: composes a request from a scenario, calls the real service endpoint, shows the cards (the
// service renders them), and sends real feedback. Data from the service is put into the page as text,
// except the server-rendered card fragment (escaped there, Markdown with raw HTML off).
"use strict";

(() => {
  const form = document.getElementById("demo-form");
  const story = document.getElementById("story");
  const error = document.getElementById("error");
  const cards = document.getElementById("cards");
  const report = document.getElementById("report");
  const requestView = document.getElementById("request");
  const responseView = document.getElementById("response");
  let servicePath = null;

  const showStory = () => {
    const option = document.getElementById("scenario").selectedOptions[0];
    story.textContent = option ? option.dataset.story : "";
  };

  const fail = (message) => {
    error.hidden = false;
    error.textContent = message;
  };

  async function token(path) {
    const answer = await fetch("/demo/token", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ path }),
    });
    if (!answer.ok) throw new Error(`no token: HTTP ${answer.status}`);
    return (await answer.json()).token;
  }

  async function call(path, body) {
    const headers = { "Content-Type": "application/json" };
    const bearer = await token(path);
    if (bearer) headers.Authorization = `Bearer ${bearer}`;
    return fetch(path, { method: "POST", headers, body: JSON.stringify(body) });
  }

  async function reportRows() {
    const answer = await fetch("/demo/report");
    return answer.ok ? (await answer.json()).rows : [];
  }

  function showReport(rule, before, after) {
    const was = before.find((row) => row.rule === rule) || { accepted: 0, overridden: 0 };
    const now = after.find((row) => row.rule === rule);
    report.hidden = false;
    report.replaceChildren();
    const heading = document.createElement("strong");
    heading.textContent = "Override report, today: ";
    const line = document.createElement("span");
    line.className = "report-line";
    line.dataset.rule = rule;
    line.textContent = now
      ? `${rule}: issued ${now.issued}, accepted ${now.accepted} (was ${was.accepted}), ` +
        `overridden ${now.overridden} (was ${was.overridden}), no feedback ${now.no_feedback}`
      : `${rule}: not in the report`;
    report.append(heading, line);
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    try {
      const query = new URLSearchParams(new FormData(form));
      const composed = await fetch(`/demo/request?${query}`);
      if (!composed.ok) throw new Error(`the request could not be composed: HTTP ${composed.status}`);
      const body = await composed.json();
      requestView.textContent = JSON.stringify(body, null, 2);
      servicePath = `/cds-services/naltrexone-${body.hook}`;
      const answer = await call(servicePath, body);
      const response = await answer.json();
      responseView.textContent = JSON.stringify(response, null, 2);
      if (!answer.ok) throw new Error(`the service answered HTTP ${answer.status}`);
      const fragment = await fetch("/demo/cards", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(response),
      });
      cards.innerHTML = await fragment.text();
      cards.classList.remove("empty");
      cards.dataset.loaded = String(response.cards.length);
      report.hidden = true;
    } catch (problem) {
      fail(problem.message);
    }
  });

  cards.addEventListener("click", async (event) => {
    const button = event.target.closest("button");
    if (!button || !servicePath) return;
    const card = button.closest(".card");
    const item = { card: card.dataset.uuid, outcomeTimestamp: new Date().toISOString() };
    let done;
    if (button.classList.contains("accept")) {
      item.outcome = "accepted";
      item.acceptedSuggestions = [{ id: button.dataset.suggestion }];
      done = `Accepted: ${button.textContent}`;
    } else {
      const option = card.querySelector("select.reason").selectedOptions[0];
      item.outcome = "overridden";
      item.overrideReason = {
        reason: { system: option.dataset.system, code: option.value, display: option.dataset.display },
      };
      done = `Overridden: ${option.dataset.display}`;
    }
    try {
      const before = await reportRows();
      const answer = await call(`${servicePath}/feedback`, { feedback: [item] });
      if (!answer.ok) throw new Error(`feedback was refused: HTTP ${answer.status}`);
      const actions = card.querySelector(".actions");
      const note = document.createElement("span");
      note.className = "done";
      note.textContent = done;
      actions.replaceChildren(note);
      showReport(card.dataset.rule, before, await reportRows());
    } catch (problem) {
      fail(problem.message);
    }
  });

  document.getElementById("scenario").addEventListener("change", showStory);
  showStory();
})();
