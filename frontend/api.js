// The service's HTTP API, relative to the page's own origin (no external URLs, ever).

const KEY_STORAGE = "whales.apiKey";

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message || `HTTP ${status}`);
    this.status = status;
    this.code = code || `http_${status}`;
    this.details = details;
  }
}

export const apiKey = {
  get: () => sessionStorage.getItem(KEY_STORAGE) || "",
  set: (value) => (value ? sessionStorage.setItem(KEY_STORAGE, value) : sessionStorage.removeItem(KEY_STORAGE)),
};

function authHeaders(extra = {}) {
  const key = apiKey.get();
  return key ? { ...extra, "X-API-Key": key } : extra;
}

/**
 * An <img> cannot send X-API-Key: when the service keeps its photos behind a key
 * (WHALES_REQUIRE_KEY_FOR_READS) the load fails, and the photo is fetched again with the key and
 * shown from a blob: URL (allowed by the page's Content-Security-Policy). Once per image.
 */
export async function retryImageWithKey(img) {
  const src = img.getAttribute("src") || "";
  if (!apiKey.get() || !src.startsWith("/v1/") || img.dataset.keyed) return;
  img.dataset.keyed = "1";
  try {
    const response = await fetch(src, { headers: authHeaders() });
    if (response.ok) img.src = URL.createObjectURL(await response.blob());
  } catch {
    // the image stays broken, as it would without this retry
  }
}

/** Turn the service's `{"error": {code, message, details}}` (or FastAPI's `{"detail"}`) into an ApiError. */
function errorFrom(status, body) {
  const err = body && typeof body === "object" ? body.error : null;
  if (err && typeof err === "object") return new ApiError(status, err.code, err.message, err.details);
  if (body && body.detail) {
    const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    return new ApiError(status, `http_${status}`, detail);
  }
  if (status === 0) return new ApiError(0, "network", "The service could not be reached.");
  return new ApiError(status, `http_${status}`, `The service answered HTTP ${status}.`);
}

async function parse(response) {
  const type = response.headers.get("content-type") || "";
  const body = type.includes("json") ? await response.json().catch(() => null) : null;
  if (!response.ok) throw errorFrom(response.status, body);
  return body;
}

async function getJson(path, params = {}) {
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") query.set(k, v);
  const qs = query.toString();
  let response;
  try {
    response = await fetch(qs ? `${path}?${qs}` : path, { headers: authHeaders({ Accept: "application/json" }) });
  } catch {
    throw errorFrom(0, null);
  }
  return parse(response);
}

/**
 * POST a FormData with upload progress (fetch cannot report it, XMLHttpRequest can).
 * `onProgress(fraction)` gets 0..1 while uploading and `null` once the server is working.
 */
function postForm(path, form, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    for (const [k, v] of Object.entries(authHeaders({ Accept: "application/json" }))) xhr.setRequestHeader(k, v);
    xhr.responseType = "json";
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable && onProgress) onProgress(event.loaded / event.total);
    };
    xhr.upload.onload = () => onProgress && onProgress(null);
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) resolve(xhr.response);
      else reject(errorFrom(xhr.status, xhr.response));
    };
    xhr.onerror = () => reject(errorFrom(0, null));
    xhr.send(form);
  });
}

export const api = {
  /** `POST /v1/predict`: one photo plus optional sighting fields. */
  predict(file, fields = {}, onProgress, topK = 5) {
    const form = new FormData();
    form.append("file", file, file.name);
    for (const [k, v] of Object.entries(fields)) if (v !== undefined && v !== null && v !== "") form.append(k, v);
    return postForm(`/v1/predict?top_k=${topK}`, form, onProgress);
  },

  /** `POST /v1/predict-batch`: a ZIP (`archive`) or several photos (`files`). */
  predictBatch(files, onProgress) {
    const form = new FormData();
    const isZip = (f) => /\.zip$/i.test(f.name) || /zip/.test(f.type);
    if (files.length === 1 && isZip(files[0])) form.append("archive", files[0], files[0].name);
    else for (const f of files) form.append("files", f, f.name);
    return postForm("/v1/predict-batch", form, onProgress);
  },

  listIndividuals: (params) => getJson("/v1/individuals", params),
  getIndividual: (id) => getJson(`/v1/individuals/${encodeURIComponent(id)}`),
  thumbnailUrl: (imageId) => `/v1/images/${encodeURIComponent(imageId)}/thumbnail`,
  /** A server-given `thumbnail_url`, accepted only when it is a path on this origin. */
  sameOriginUrl: (url) => (typeof url === "string" && url.startsWith("/") && !url.startsWith("//") ? url : null),
  listSpecies: () => getJson("/v1/species"),
  /** The verified keypoint pairs behind one candidate (optionally with another catalog photo). */
  matchPairs: (predictionId, individualId, referenceImageId) => getJson(
    `/v1/predictions/${encodeURIComponent(predictionId)}/matches/${encodeURIComponent(individualId)}`,
    { reference_image_id: referenceImageId }),
  /** An individual's sightings, oldest first, paged. */
  sightings: (id, params) => getJson(`/v1/individuals/${encodeURIComponent(id)}/sightings`, params),

  /** `POST /v1/predictions/{id}/review` with the API key. */
  async review(predictionId, body) {
    let response;
    try {
      response = await fetch(`/v1/predictions/${encodeURIComponent(predictionId)}/review`, {
        method: "POST",
        headers: authHeaders({ "Content-Type": "application/json", Accept: "application/json" }),
        body: JSON.stringify(body),
      });
    } catch {
      throw errorFrom(0, null);
    }
    return parse(response);
  },

  /** The review queue: `GET /v1/predictions` (filters, `sort`, `limit`, `cursor`). */
  listPredictions: (params) => getJson("/v1/predictions", params),
  /** A photo behind the key (an unreviewed prediction's), as `{blob}`: an <img> cannot send the header. */
  photoBlob: (path) => fetchBlob(path),
  /** `DELETE /v1/predictions/{id}/review`: undo a decision (with the API key). */
  async undoReview(predictionId) {
    let response;
    try {
      response = await fetch(`/v1/predictions/${encodeURIComponent(predictionId)}/review`, {
        method: "DELETE", headers: authHeaders({ Accept: "application/json" }) });
    } catch {
      throw errorFrom(0, null);
    }
    return parse(response);
  },

  /** Catalog curation (with the API key): rename, merge a duplicate, move or remove one photo. */
  rename: (id, newId) => sendJson("POST", `/v1/individuals/${encodeURIComponent(id)}/rename`, { new_id: newId }),
  merge: (id, into) => sendJson("POST", `/v1/individuals/${encodeURIComponent(id)}/merge`, { into }),
  moveImage: (imageId, individualId, create) => sendJson("POST", `/v1/images/${encodeURIComponent(imageId)}/move`,
    { individual_id: individualId, create }),
  removeImage: (imageId) => sendJson("DELETE", `/v1/images/${encodeURIComponent(imageId)}`),
  /** What curation did to an id, and where a retired (merged or renamed) id lives on. */
  curationHistory: (id) => getJson(`/v1/individuals/${encodeURIComponent(id)}/curation`),

  /** `GET /v1/export?format=csv|dwca`: fetched as a Blob because a link cannot send the key header. */
  exportBlob: (format) => fetchBlob(`/v1/export?format=${encodeURIComponent(format)}`),
  /** One individual's sighting history as `csv` or `dwca`. */
  sightingsExport: (id, format) => fetchBlob(
    `/v1/individuals/${encodeURIComponent(id)}/sightings/export?format=${encodeURIComponent(format)}`),
};

/** A JSON write (POST/DELETE) with the key; the answer's JSON, or an ApiError. */
async function sendJson(method, path, body) {
  let response;
  try {
    response = await fetch(path, { method, headers: authHeaders({ "Content-Type": "application/json", Accept: "application/json" }),
      body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw errorFrom(0, null);
  }
  return parse(response);
}

/** A download as `{blob, filename}` (with the key header, which a plain link cannot send). */
async function fetchBlob(path) {
  let response;
  try {
    response = await fetch(path, { headers: authHeaders() });
  } catch {
    throw errorFrom(0, null);
  }
  if (!response.ok) {
    const type = response.headers.get("content-type") || "";
    throw errorFrom(response.status, type.includes("json") ? await response.json().catch(() => null) : null);
  }
  const disposition = response.headers.get("content-disposition") || "";
  const match = /filename="?([^";]+)"?/i.exec(disposition);
  return { blob: await response.blob(), filename: match ? match[1] : null };
}
