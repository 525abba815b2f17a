// The forum API over fetch: JSON in and out, errors in the API's one shape.

/** An answer that was not 2xx: `code`, `message`, and for some codes more (see openapi.yaml). */
export class ApiError extends Error {
  constructor(status, body, headers) {
    const error = body?.error ?? {};
    super(error.message ?? `HTTP ${status}`);
    this.status = status;
    this.code = error.code ?? "http_error";
    this.match = error.match ?? null; // profanity: {field, text, start, end}
    this.retryAfter = Number(headers.get("retry-after")) || null; // rate limits
  }

  /** What to show a person. */
  describe() {
    if (this.match) return `${this.message}. Change “${this.match.text}” and send again.`;
    if (this.retryAfter) return `${this.message} (again in ${this.retryAfter} s).`;
    return this.message;
  }
}

export class Api {
  constructor(base, token) {
    this.base = base.replace(/\/$/, "");
    this.token = token;
  }

  /**
   * `path` is relative to the API base, or a `next_page` URL the API gave. A create carries an
   * `Idempotency-Key`: when the network fails before an answer arrives, the request is sent
   * again with the same key, and the API answers it as the first (never a second post).
   */
  async request(method, path, body, { key } = {}) {
    const url = /^https?:/.test(path) ? path : path.startsWith("/api/") ? new URL(path, this.base).href : `${this.base}${path}`;
    const headers = { authorization: `Bearer ${this.token}` };
    if (body !== undefined) headers["content-type"] = "application/json";
    if (key) headers["idempotency-key"] = key;
    const init = { method, headers, body: body === undefined ? undefined : JSON.stringify(body) };
    let response;
    for (let attempt = 1; ; attempt++) {
      try {
        response = await fetch(url, init);
        break;
      } catch (error) {
        // Only a keyed request may be sent again: without a key a retry could write twice.
        if (!key || attempt >= 3) throw error;
        await new Promise((resolve) => setTimeout(resolve, 500 * attempt));
      }
    }
    const text = await response.text();
    const data = text ? JSON.parse(text) : null;
    if (!response.ok) throw new ApiError(response.status, data, response.headers);
    return data;
  }

  get(path) { return this.request("GET", path); }
  post(path, body) { return this.request("POST", path, body ?? null); }
  /** A create: sent with a fresh `Idempotency-Key`, safe to send again. */
  create(path, body) { return this.request("POST", path, body ?? null, { key: crypto.randomUUID() }); }
  put(path, body) { return this.request("PUT", path, body); }
  patch(path, body) { return this.request("PATCH", path, body); }
  delete(path) { return this.request("DELETE", path); }

  /**
   * Uploads an image the way browsers should: ask for a presigned PUT, then send the bytes
   * straight to S3 with exactly the signed headers, reporting progress (0..1).
   */
  async uploadImage(file, onProgress) {
    const media = await this.create("/upload/presign/", { content_type: file.type, content_length: file.size });
    await new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open(media.upload.method, media.upload.url);
      for (const [name, value] of Object.entries(media.upload.headers)) {
        // The browser sets Content-Length itself from the body.
        if (name.toLowerCase() !== "content-length") xhr.setRequestHeader(name, value);
      }
      xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
      xhr.onload = () => (xhr.status < 300 ? resolve() : reject(new Error(`the upload was refused (${xhr.status})`)));
      xhr.onerror = () => reject(new Error("the upload failed"));
      xhr.send(file);
    });
    return media;
  }
}

/** The claims of a JWT (not verified: the API verifies; the page only reads who it is). */
export function claims(token) {
  const part = token.split(".")[1] ?? "";
  const json = atob(part.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(part.length / 4) * 4, "="));
  return JSON.parse(new TextDecoder().decode(Uint8Array.from(json, (c) => c.charCodeAt(0))));
}
