// The footer's model line: which embedding identifies the photos and what it is for, from the model
// card that `GET /v1/models` carries (one source: the registry entry; see docs/MODELS.md).
import { $, h, replace } from "./dom.js";

/** Fill `#model-line` from a `/v1/models` answer; hidden when the answer has no embedding card. */
export function showModelLine(body) {
  const line = $("#model-line");
  if (!line) return;
  const embedding = (body?.models || []).find((m) => m.role === "embedding");
  const card = embedding?.card;
  if (!card) {
    line.hidden = true;
    return;
  }
  replace(line,
    "Identification model ", h("code", { text: embedding.model_id }), ": ",
    h("span", { class: "model-use", text: card.intended_use }), " ",
    h("span", { class: "model-limits", text: `Limits: ${card.limits}` }));
  line.hidden = false;
}
