// Playground: a photo and a question, and what rapport does with them, step by step:
// the regions it looked at, every concept's score against the threshold, the concepts
// named in the text, the exact prompt, and (with a generator) the streamed answer.
import { call, dataURL, photoURL, streamEvents, userPath } from "./api.js";
import { dropZone, fill, h, toast } from "./dom.js";

// What decides when no min_score is in force: a threshold per concept (retrieval/decision.py).
const RULE = "decision rule (per concept)";
const COLOURS = ["#e11d48", "#2563eb", "#16a34a", "#d97706", "#7c3aed", "#0891b2"];

export function render(screen, context) {
  const urls = [];
  const track = (url) => (urls.push(url), url);
  let photo = null; // { file, url, data }
  let generator = "none";
  let running = null;

  const userInput = h("input", { id: "play-user", value: context.user, placeholder: "user id",
    "aria-label": "User id", autocomplete: "off" });
  const question = h("textarea", { id: "question", rows: 2, maxlength: 8000,
    placeholder: "What is <bo> doing?" });
  question.value = "What is in this photo?";
  const topK = h("input", { id: "top-k", type: "number", min: 1, max: 100, value: 3 });
  const minScore = h("input", { id: "min-score", type: "range", min: -1, max: 1, step: 0.01 });
  const minScoreValue = h("output", { for: "min-score", id: "min-score-value" }, RULE);
  // Back to the service's own rule (a fixed min_score, or the decision rule per concept).
  const ruleButton = h("button", { type: "button", class: "ghost", id: "use-rule", hidden: true,
    title: "Forget the slider: use what the service decides with" }, "reset");
  let minScoreTouched = false;
  const frame = h("div", { class: "photo-frame empty", id: "photo-frame" });
  const results = h("div", { class: "results", id: "results" },
    h("p", { class: "muted" }, "Choose a photo or type a question, then run."));
  const answer = h("div", { class: "answer", id: "answer" });
  const ask = h("button", { class: "primary", id: "ask", disabled: true }, "Ask the MLLM");
  const memory = h("select", { id: "memory", "aria-label": "Memory" },
    ["read", "off", "propose", "auto"].map((mode) => h("option", { value: mode }, `memory: ${mode}`)));
  const runButton = h("button", { class: "primary", id: "run", type: "submit" }, "Run");

  const setPhoto = async (files) => {
    const file = files[0];
    photo = { file, url: track(URL.createObjectURL(file)), data: await dataURL(file) };
    fill(frame, h("img", { src: photo.url, alt: "the query photo" }));
    frame.classList.remove("empty");
    run();
  };

  function body() {
    const payload = { question: question.value, top_k: Number(topK.value) || undefined };
    if (photo) payload.image = photo.data;
    if (minScoreTouched) payload.min_score = Number(minScore.value);
    return payload;
  }

  async function run() {
    context.user = userInput.value.trim();
    if (!context.user) {
      toast("Type the user id whose concepts to search.", "error");
      return;
    }
    running?.abort();
    running = new AbortController();
    let result;
    try {
      result = await (await call(`${userPath(context.user)}/playground`,
        { method: "POST", json: body(), signal: running.signal })).json();
    } catch (error) {
      if (error.name !== "AbortError") toast(error.message, "error");
      return;
    }
    generator = result.generator;
    ask.disabled = generator === "none";
    ask.title = generator === "none" ? "This service has no MLLM (RAPPORT_GENERATOR=none)" : "";
    if (!minScoreTouched && result.min_score !== null) minScore.value = result.min_score;
    minScore.classList.toggle("inactive", result.min_score === null);
    fill(minScoreValue, result.min_score === null ? RULE : result.min_score.toFixed(2));
    drawBoxes(result);
    showResults(result);
  }

  function drawBoxes(result) {
    frame.querySelectorAll(".box").forEach((box) => box.remove());
    if (!photo || !result.width) return;
    const place = (node, [x0, y0, x1, y1]) => {
      node.style.left = `${(100 * x0) / result.width}%`;
      node.style.top = `${(100 * y0) / result.height}%`;
      node.style.width = `${(100 * (x1 - x0)) / result.width}%`;
      node.style.height = `${(100 * (y1 - y0)) / result.height}%`;
      return node;
    };
    const whole = (box) => box[0] === 0 && box[1] === 0 && box[2] === result.width && box[3] === result.height;
    result.regions.forEach((region) => {
      if (whole(region.box)) return;
      const label = region.concept ? `${region.concept.name} ${region.score.toFixed(2)}` : "";
      frame.append(place(h("div", { class: "box region", title: label }), region.box));
    });
    result.scores.filter((score) => score.kept).forEach((score, index) => {
      const box = place(h("div", { class: "box found", dataset: { concept: score.concept.id } },
        h("span", { class: "tag" }, `${score.concept.name} ${score.score.toFixed(2)}`)), score.box);
      box.style.setProperty("--colour", COLOURS[index % COLOURS.length]);
      frame.append(box);
    });
  }

  function showResults(result) {
    const thresholds = result.scores.map((s) => s.threshold).filter((t) => t !== null);
    const low = Math.min(0, ...result.scores.map((s) => s.score), ...thresholds);
    const position = (value) => `${(100 * (value - low)) / (1 - low)}%`;
    let colour = 0;
    const bars = result.scores.map((score) => {
      const fillBar = h("div", { class: "fill" });
      fillBar.style.width = position(Math.max(score.score, low));
      if (score.kept) fillBar.style.setProperty("--colour", COLOURS[colour++ % COLOURS.length]);
      const bar = h("div", { class: "bar" }, fillBar);
      if (score.threshold !== null) {
        const threshold = h("div", { class: "threshold", title: thresholdNote(score, result) });
        threshold.style.left = position(score.threshold);
        bar.append(threshold);
      }
      return h("li", { class: score.kept ? "kept" : "below", dataset: { concept: score.concept.id } },
        h("span", { class: "name", title: score.concept.name }, score.concept.name),
        bar,
        h("span", { class: "score" }, score.score.toFixed(3)),
        h("span", { class: "verdict", title: verdictNote(score, result) }, verdict(score)),
        score.kept && photo ? notButton(score.concept) : "");
    });
    fill(results,
      h("section", {}, h("h2", {}, "Concepts seen in the photo"),
        result.scores.length ?
          h("div", { class: "scores" }, h("ol", { id: "scores" }, bars),
            h("p", { class: "fine", id: "scores-line" }, `Line: ${result.min_score === null ?
              "each concept's threshold, from the decision rule" : `min_score ${result.min_score.toFixed(2)}`}` +
              ` · top_k ${result.top_k} · ` +
              `${result.regions.length} region${result.regions.length === 1 ? "" : "s"} compared`)) :
          h("p", { class: "muted" }, photo ? "This user has no concepts to compare with." : "No photo.")),
      h("section", {}, h("h2", {}, "Named in the question"),
        result.named.length ? h("p", { id: "named" }, result.named.map((c) => h("span", { class: "chip" }, c.name))) :
          h("p", { class: "muted" }, "No concept is named (write <name> or the name as a word).")),
      h("section", {}, h("h2", {}, "The prompt"),
        h("p", { class: "fine" }, result.prompt_concepts.length ?
          `Concepts in it: ${result.prompt_concepts.map((c) => c.name).join(", ")}` :
          "No concept goes into it: the question goes to the MLLM as it is."),
        h("div", { class: "prompt", id: "prompt" }, result.prompt.map((message) =>
          h("div", { class: `message ${message.role}` }, h("span", { class: "role" }, message.role),
            message.parts.map((part) => (part.type === "text" ? h("pre", {}, part.text) : promptPhoto(part))))))),
      h("section", {}, h("h2", {}, "Answer"), h("div", { class: "answer-controls" }, ask, memory), answer));
  }

  // "That is not <bo>": the photo becomes a correction of the concept, and the search runs
  // again (the decision refits at once, so the same or a similar photo is no longer claimed).
  function notButton(concept) {
    const button = h("button", { class: "not", type: "button",
      title: `Tell rapport this photo does not show ${concept.name}` }, `Not ${concept.name}`);
    button.addEventListener("click", async () => {
      const form = new FormData();
      form.append("images", photo.file, photo.file.name || "photo.jpg");
      button.disabled = true;
      try {
        await call(`${userPath(context.user)}/concepts/${encodeURIComponent(concept.id)}/negatives`,
          { method: "POST", form });
        toast(`Noted: this photo is not ${concept.name}.`);
        run();
      } catch (error) {
        toast(error.message, "error");
        button.disabled = false;
      }
    });
    return button;
  }

  function verdict(score) {
    if (score.kept) return "found";
    if (score.threshold === null) return "not by photo";
    return score.score < score.threshold ? "below" : "outranked";
  }

  function thresholdNote(score, result) {
    return result.min_score === null ?
      `threshold ${score.threshold.toFixed(3)} (decision rule)` : `min_score ${result.min_score}`;
  }

  function verdictNote(score, result) {
    if (score.threshold === null) {
      return "the decision rule cannot tell this concept's photos from others' yet: " +
        "it is found only when the question names it (or with a min_score)";
    }
    const line = thresholdNote(score, result);
    if (score.kept) return `at least its ${line} and within top_k: retrieval returns it`;
    if (score.score < score.threshold) return `under its ${line}`;
    return `above its ${line}, but outside top_k, or every region matched another concept better`;
  }

  function promptPhoto(part) {
    const image = h("img", { alt: part.photo === "query" ? "the query photo" : "a reference photo" });
    if (part.photo === "query" && photo) image.src = photo.url;
    else if (part.image_id) {
      photoURL(context.user, part.concept_id, part.image_id, 256).then((url) => (image.src = track(url)));
    }
    return h("figure", { class: "prompt-photo" }, image,
      h("figcaption", {}, part.photo === "query" ? "query photo" : "reference photo"));
  }

  async function askModel() {
    ask.disabled = true;
    fill(answer, h("p", { class: "streaming", id: "answer-text" }));
    const text = answer.firstChild;
    try {
      const chat = { ...body(), stream: true, memory: memory.value };
      await streamEvents(`${userPath(context.user)}/chat`, chat, (name, data) => {
        if (name === "delta") text.append(data.text);
        else if (name === "memory") memoryLine(data);
        else if (name === "done") {
          text.classList.remove("streaming");
          answer.append(h("p", { class: "fine" },
            `${data.model} · ${data.usage.completion_tokens} tokens · ${data.finish_reason}`));
        } else if (name === "error") {
          answer.append(h("p", { class: "error" }, `${data.title}: ${data.detail}`));
        }
      });
    } catch (error) {
      answer.append(h("p", { class: "error" }, error.message));
    } finally {
      ask.disabled = generator === "none";
    }
  }
  ask.addEventListener("click", askModel);

  // "Memory updated" under the answer: what the chat changed (auto) or proposed (propose).
  function memoryLine(data) {
    if (data.memory !== memory.value) {
      answer.append(h("p", { class: "fine", id: "memory-mode" },
        `memory: ${data.memory} (narrowed from ${memory.value} by the user's own mode)`));
    }
    if (!data.memory_changes.length) return;
    const applied = data.memory_changes.filter((change) => change.applied);
    const proposed = data.memory_changes.filter((change) => !change.applied);
    const listed = (changes) => changes.map((c) => `${c.action} ${c.concept.name}`).join(", ");
    if (applied.length) {
      answer.append(h("p", { class: "memory-updated", id: "memory-updated" },
        `✓ Memory updated: ${listed(applied)}`));
    }
    if (proposed.length) {
      answer.append(h("p", { class: "memory-proposed", id: "memory-proposed" },
        `Proposed (not applied): ${listed(proposed)}`));
    }
  }

  let timer;
  const later = () => {
    clearTimeout(timer);
    timer = setTimeout(run, 300);
  };
  minScore.addEventListener("input", () => {
    minScoreTouched = true;
    ruleButton.hidden = false;
    minScore.classList.remove("inactive");
    fill(minScoreValue, Number(minScore.value).toFixed(2));
    later();
  });
  ruleButton.addEventListener("click", () => {
    minScoreTouched = false;
    ruleButton.hidden = true;
    later();
  });
  topK.addEventListener("input", later);

  fill(screen,
    h("div", { class: "screen-head" },
      h("div", {}, h("h1", {}, "Playground"),
        h("p", { class: "muted" }, "What rapport finds in a photo and puts into the prompt. " +
          "Nothing is stored; the MLLM is only called when you ask."))),
    h("div", { class: "playground" },
      h("form", { class: "card inputs", onsubmit: (event) => {
        event.preventDefault();
        run();
      } },
      h("label", {}, "User", userInput),
      dropZone("Drop a photo to ask about", setPhoto, { multiple: false }),
      frame,
      h("label", {}, "Question", question),
      h("div", { class: "knobs" },
        h("label", {}, "top_k", topK),
        h("label", { class: "grow" }, h("span", {}, "min_score ", minScoreValue, " ", ruleButton), minScore)),
      runButton),
      h("div", { class: "card" }, results)));
  return () => {
    running?.abort();
    urls.forEach((url) => URL.revokeObjectURL(url));
  };
}
