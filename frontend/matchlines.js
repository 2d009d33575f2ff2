// "Why it matched": the verified keypoint pairs between the query photo and a catalog photo, drawn as
// SVG lines between the two photos side by side (GET /v1/predictions/{id}/matches/{individual_id}).
import { api } from "./api.js";
import { h, replace } from "./dom.js";

const HEIGHT = 320; // both photos are drawn this tall (SVG units); the SVG scales to the card's width
const GAP = 24;

/** A colour per pair, spread around the hue circle so that neighbouring lines differ. */
const colour = (i) => `hsl(${Math.round((i * 137.508) % 360)} 90% 55%)`;

/**
 * The side-by-side drawing of one explanation.
 * @param {object} ex the endpoint's answer
 * @param {string|null} queryUrl the query photo (object URL of the upload, or the stored photo)
 */
export function drawPairs(ex, queryUrl) {
  const [qw, qh] = ex.query_size || [4, 3];
  const [rw, rh] = ex.reference_size || [4, 3];
  const sq = HEIGHT / qh;
  const sr = HEIGHT / rh;
  const left = qw * sq;
  const width = left + GAP + rw * sr;
  const refUrl = api.sameOriginUrl(ex.reference_thumbnail_url) || api.thumbnailUrl(ex.reference_image_id);
  const n = ex.pairs.length;
  const label = n
    ? `${ex.inliers} verified matching points between the query photo and catalog photo ${ex.reference_image_id}`
    : `No verified matching points between the query photo and catalog photo ${ex.reference_image_id}`;
  const lines = ex.pairs.map((p, i) => {
    const x1 = p.query[0] * sq;
    const y1 = p.query[1] * sq;
    const x2 = left + GAP + p.reference[0] * sr;
    const y2 = p.reference[1] * sr;
    const stroke = colour(i);
    return h("svg:g", { class: "pair", "data-score": p.score },
      h("svg:line", { x1, y1, x2, y2, stroke }),
      h("svg:circle", { cx: x1, cy: y1, r: 3.5, fill: stroke }),
      h("svg:circle", { cx: x2, cy: y2, r: 3.5, fill: stroke }));
  });
  return h("svg:svg", { class: "match-svg", viewBox: `0 0 ${width.toFixed(1)} ${HEIGHT}`, role: "img",
    "aria-label": label, "data-testid": "match-svg", "data-pairs": n, preserveAspectRatio: "xMidYMid meet" },
  h("svg:title", { text: label }),
  queryUrl ? h("svg:image", { href: queryUrl, x: 0, y: 0, width: left, height: HEIGHT, preserveAspectRatio: "none" })
    : h("svg:rect", { x: 0, y: 0, width: left, height: HEIGHT, class: "no-photo" }),
  h("svg:image", { href: refUrl, x: left + GAP, y: 0, width: rw * sr, height: HEIGHT, preserveAspectRatio: "none" }),
  h("svg:g", { class: "pairs" }, lines));
}

/**
 * The "Show matched points" toggle and the panel it opens, for one prediction.
 * `show(candidate, imageId)` draws that candidate's pairs (turning the toggle on); `refresh(candidate)`
 * redraws only while the toggle is on (e.g. when another candidate is chosen).
 */
export function matchExplainer(predictionId, queryUrl) {
  const panel = h("div", { class: "match-panel", id: `match-${predictionId}`, hidden: true, "aria-live": "polite" });
  const toggle = h("button", { type: "button", class: "btn ghost", "aria-pressed": "false", "aria-controls": panel.id,
    "data-testid": "match-toggle" }, "Show matched points");
  let current = null;
  let seq = 0;

  async function draw(candidate, imageId) {
    current = { candidate, imageId };
    const mine = ++seq;
    replace(panel, h("p", { class: "hint", text: "Finding the matched points…" }));
    try {
      // the candidate's own best photo is the endpoint's default (it then also says when matching
      // found no geometric support); any other photo is compared on request
      const other = imageId && imageId !== candidate.reference_image_id ? imageId : undefined;
      const ex = await api.matchPairs(predictionId, candidate.individual_id, other);
      if (mine !== seq) return; // a newer request was made meanwhile
      const photo = queryUrl || api.sameOriginUrl(ex.query_image_url);
      const count = ex.pairs.length
        ? `${ex.inliers} verified matching point${ex.inliers === 1 ? "" : "s"}` +
          (ex.inliers > ex.pairs.length ? ` (the best ${ex.pairs.length} drawn)` : "")
        : "No verified matching points";
      replace(panel,
        h("p", { class: "match-caption" },
          h("strong", { class: "inlier-count", "data-testid": "inlier-count", text: count }),
          ` between the query photo (left) and catalog photo `, h("code", { text: ex.reference_image_id }),
          ` of ${candidate.individual_id} (right).`),
        ex.query_size && ex.reference_size ? drawPairs(ex, photo) : null,
        ex.reason ? h("p", { class: "hint match-reason", text: `Why none: ${ex.reason}` }) : null,
        // recomputed from the stored JPEG, the count can differ by a few from matching's own
        !other && typeof ex.verified_inliers === "number" && ex.verified_inliers !== ex.inliers && !ex.reason
          ? h("p", { class: "hint", text: `Matching counted ${ex.verified_inliers} when the photo was identified; these pairs are recomputed from the stored photo.` })
          : null);
    } catch (err) {
      if (mine === seq) replace(panel, h("p", { class: "review-status error", text: err.message }));
    }
  }

  const setOn = (on) => {
    toggle.setAttribute("aria-pressed", String(on));
    toggle.textContent = on ? "Hide matched points" : "Show matched points";
    panel.hidden = !on;
  };

  return {
    toggle,
    panel,
    /** Wire the toggle to a function returning the chosen candidate. */
    bind(chosen) {
      toggle.addEventListener("click", () => {
        const on = toggle.getAttribute("aria-pressed") !== "true";
        setOn(on);
        const candidate = chosen();
        if (on && candidate) draw(candidate, current?.candidate === candidate ? current.imageId : candidate.reference_image_id);
      });
    },
    show(candidate, imageId) {
      setOn(true);
      draw(candidate, imageId);
    },
    refresh(candidate) {
      if (toggle.getAttribute("aria-pressed") === "true") draw(candidate, candidate.reference_image_id);
    },
  };
}
