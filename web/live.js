// Live updates: one WebSocket, reconnected with backoff and a fresh token, resubscribed to the
// posts on screen, kept alive below API Gateway's idle timeout.

/** API Gateway closes a WebSocket idle for 10 minutes: a ping well before that. */
const KEEPALIVE_MS = globalThis.FORUM_KEEPALIVE_MS ?? 5 * 60_000;
/** The server takes at most this many post ids in one subscribe message ... */
const POSTS_PER_MESSAGE = 50;
/** ... and follows at most this many posts per connection. */
const MAX_FOLLOWED = 200;
/**
 * Subscribe messages that change what is followed are rate-limited per user (120 a minute by
 * default): posts followed together (a page of the feed) go in one message, and follows go
 * out at most once a second.
 */
const FOLLOW_GAP_MS = 1000;
/** After a `rate_limited` error, what is not confirmed is asked for again this much later. */
const RATE_LIMITED_RETRY_MS = 10_000;

export class Live {
  /**
   * `token()` gives the token to connect with (a fresh one when the last expired), or null when
   * there is none to give: then the connection stays closed and `onStatus("signed out")`.
   */
  constructor(url, token, { onMessage, onStatus }) {
    Object.assign(this, { url, token, onMessage, onStatus });
    this.following = new Set();
    /** Followed, not yet sent: they go out together ([`flush`]). */
    this.pending = new Set();
    this.lastFollowSent = 0;
    this.flushing = false;
    /** Posts the server confirmed following on this socket (`subscribed`). */
    this.confirmed = new Set();
    this.attempt = 0;
    this.closed = false;
    this.connect();
  }

  async connect() {
    const token = await this.token();
    if (!token) {
      this.closed = true;
      this.onStatus("signed out");
      return;
    }
    const socket = new WebSocket(`${this.url}?token=${encodeURIComponent(token)}`);
    this.socket = socket;
    socket.onopen = () => {
      this.attempt = 0;
      this.confirmed = new Set();
      this.onStatus("online");
      this.subscribe([...this.following]);
      this.keepalive = setInterval(() => this.send({ action: "ping" }), KEEPALIVE_MS);
    };
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "subscribed") message.post_ids.forEach((id) => this.confirmed.add(id));
      // The server could not act on a message just now (its deadline passed): what is not
      // confirmed yet is asked for again, after a second.
      // Over the rate limit, the same, ten seconds later.
      if (message.type === "error" && (message.code === "unavailable" || message.code === "rate_limited")) {
        clearTimeout(this.retry);
        const delay = message.code === "unavailable" ? 1000 : RATE_LIMITED_RETRY_MS;
        this.retry = setTimeout(() => this.subscribe([...this.following].filter((id) => !this.confirmed.has(id))), delay);
      }
      if (message.type !== "pong") this.onMessage(message);
    };
    socket.onclose = () => {
      clearInterval(this.keepalive);
      clearTimeout(this.retry);
      this.onStatus("offline");
      if (this.closed) return;
      // 1 s, 2 s, 4 s ... 30 s, each with jitter, so a restarted server is not stampeded. The
      // server closes a socket whose token expired: the next one asks for a fresh token.
      const delay = Math.min(30_000, 1000 * 2 ** this.attempt++) * (0.5 + Math.random() / 2);
      setTimeout(() => this.connect(), delay);
    };
  }

  send(message) {
    if (this.socket?.readyState === WebSocket.OPEN && (message.post_ids?.length ?? 1) > 0) {
      this.socket.send(JSON.stringify(message));
    }
  }

  /** Subscribes in messages the server accepts (at most 50 ids each). */
  subscribe(postIds) {
    for (let i = 0; i < postIds.length; i += POSTS_PER_MESSAGE) {
      this.send({ action: "subscribe", post_ids: postIds.slice(i, i + POSTS_PER_MESSAGE) });
    }
  }

  follow(postId) {
    if (this.following.has(postId) || this.following.size >= MAX_FOLLOWED) return;
    this.following.add(postId);
    this.pending.add(postId);
    if (!this.flushing) {
      this.flushing = true;
      queueMicrotask(() => this.flush());
    }
  }

  /** Sends what was followed since the last send, once the gap since it has passed. */
  flush() {
    const wait = this.lastFollowSent + FOLLOW_GAP_MS - Date.now();
    if (wait > 0) {
      setTimeout(() => this.flush(), wait);
      return;
    }
    this.flushing = false;
    this.lastFollowSent = Date.now();
    const ids = [...this.pending];
    this.pending.clear();
    this.subscribe(ids);
  }

  close() {
    this.closed = true;
    clearInterval(this.keepalive);
    clearTimeout(this.retry);
    this.socket?.close();
  }
}
