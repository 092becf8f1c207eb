// The taskd console's only script: a task's page follows the task's live stream and updates
// itself in place. Text goes in with textContent only, never as HTML.
"use strict";

(function () {
  const page = document.querySelector("[data-events]");
  if (!page || !window.EventSource) {
    return;
  }
  const live = document.getElementById("live");
  const say = (text) => { if (live) { live.textContent = text; } };

  function setField(name, value) {
    document.querySelectorAll('[data-field="' + name + '"]').forEach((el) => {
      let text = value === null || value === undefined || value === "" ? "–" : String(value);
      if (name.endsWith("_at")) { text = text.replace("T", " "); }
      el.textContent = text;
      if (name === "status") { el.dataset.status = value; }
    });
  }

  function timelineEntry(entry) {
    const li = document.createElement("li");
    li.dataset.to = entry.to;
    const time = document.createElement("time");
    time.dateTime = entry.at;
    time.textContent = entry.at.replace("T", " ");
    const event = document.createElement("strong");
    event.className = "event";
    event.textContent = entry.event;
    const transition = document.createElement("span");
    transition.className = "transition";
    transition.textContent = (entry.from || "–") + " → " + entry.to;
    li.append(time, " ", event, " ", transition);
    if (entry.step) {
      const step = document.createElement("span");
      step.className = "step";
      step.textContent = "step " + entry.step;
      li.append(" ", step);
    }
    const attempt = document.createElement("span");
    attempt.className = "attempt";
    attempt.textContent = "attempt " + entry.attempt;
    li.append(" ", attempt);
    if (entry.error_code) {
      const code = document.createElement("code");
      code.textContent = entry.error_code;
      li.append(" ", code);
    }
    const text = entry.error || entry.detail;
    if (text) {
      const detail = document.createElement("p");
      detail.className = "detail";
      detail.textContent = text;
      li.append(detail);
    }
    return li;
  }

  function apply(snapshot) {
    const task = snapshot.task;
    ["status", "step", "attempt", "started_at", "finished_at", "updated_at", "error", "error_code", "last_error"]
      .forEach((name) => setField(name, task[name]));
    setField("cancel_requested", task.cancel_requested ? "yes" : "no");
    const active = task.status === "pending" || task.status === "processing";
    page.dataset.active = String(active);
    const cancel = document.getElementById("cancel");
    if (cancel) { cancel.hidden = !active; }
    const error = document.getElementById("error");
    if (error) { error.hidden = !(task.error || task.last_error); }
    const waiting = document.getElementById("waiting");
    if (waiting) { waiting.hidden = !(task.waiting_for && task.waiting_for.length > 0); }
    const timeline = document.getElementById("timeline");
    if (timeline && snapshot.history.length > 0) {
      timeline.replaceChildren(...snapshot.history.map(timelineEntry));
    }
    say(active ? "Live: updates appear as they happen." : "The task has ended.");
    return active;
  }

  const source = new EventSource(page.dataset.events);
  source.addEventListener("snapshot", (message) => {
    let snapshot;
    try {
      snapshot = JSON.parse(message.data);
    } catch (e) {
      return;
    }
    if (!apply(snapshot)) {
      source.close();
    }
  });
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED) {
      say("Live updates stopped: reload the page to see the latest state.");
    } else {
      say("Reconnecting…");
    }
  });
})();
