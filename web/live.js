// Live updates: one WebSocket, reconnected with backoff, resubscribed to the posts on screen.

export class Live {
  constructor(url, token, { onMessage, onStatus }) {
    Object.assign(this, { url, token, onMessage, onStatus });
    this.following = new Set();
    this.attempt = 0;
    this.closed = false;
    this.connect();
  }

  connect() {
    const socket = new WebSocket(`${this.url}?token=${encodeURIComponent(this.token)}`);
    this.socket = socket;
    socket.onopen = () => {
      this.attempt = 0;
      this.onStatus("online");
      this.send({ action: "subscribe", post_ids: [...this.following].slice(0, 200) });
    };
    socket.onmessage = (event) => this.onMessage(JSON.parse(event.data));
    socket.onclose = () => {
      this.onStatus("offline");
      if (this.closed) return;
      // 1 s, 2 s, 4 s ... 30 s, each with jitter, so a restarted server is not stampeded.
      const delay = Math.min(30_000, 1000 * 2 ** this.attempt++) * (0.5 + Math.random() / 2);
      setTimeout(() => this.connect(), delay);
    };
  }

  send(message) {
    if (this.socket.readyState === WebSocket.OPEN && (message.post_ids?.length ?? 1) > 0) {
      this.socket.send(JSON.stringify(message));
    }
  }

  follow(postId) {
    if (this.following.has(postId) || this.following.size >= 200) return;
    this.following.add(postId);
    this.send({ action: "subscribe", post_ids: [postId] });
  }

  close() {
    this.closed = true;
    this.socket.close();
  }
}
