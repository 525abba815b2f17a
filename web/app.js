// The reference client: sign in, the feed with infinite scroll, posts with images (presigned
// upload), likes, comments, edits, live updates. Text is always set as text, never as HTML.
import { Api, ApiError, claims } from "./api.js";
import { Live } from "./live.js";

const $ = (selector, root = document) => root.querySelector(selector);
const config = await (await fetch("config.json")).json(); // {apiBase, wsUrl, mintTokens}
let api, live, me, token, nextPage;
const posts = new Map(); // post id -> its <li>
const blocked = new Set(); // user ids the signed-in user blocks
const REASONS = ["spam", "harassment", "hate", "violence", "sexual", "self_harm", "misinformation", "other"];
const pendingMedia = new Map(); // media id -> resolve(media event)

function showError(error) {
  const box = $("#error");
  box.textContent = error instanceof ApiError ? error.describe() : String(error.message ?? error);
  box.hidden = false;
}

async function attempt(work) {
  $("#error").hidden = true;
  try {
    return await work();
  } catch (error) {
    showError(error);
    return undefined;
  }
}

function setImage(img, post) {
  img.hidden = !post.media_url;
  if (!post.media_url) return img.removeAttribute("src");
  img.src = post.media_url;
  // The thumbnails sit beside the display image: media/<id>/<320|640|1280>.<ext>.
  const base = post.media_url.replace(/\/[^/]+\.(jpg|png)$/, "");
  const ext = post.media_url.split(".").pop();
  img.srcset = [320, 640, 1280].map((w) => `${base}/${w}.${ext} ${w}w`).join(", ");
  img.sizes = "(max-width: 44rem) 100vw, 44rem";
}

function render(post, li = $("#post-template").content.firstElementChild.cloneNode(true)) {
  li.dataset.id = post.id;
  li.dataset.author = post.user.id;
  $(".author", li).textContent = post.user.username;
  const avatar = $(".avatar", li);
  avatar.hidden = !post.user.avatar_url;
  if (post.user.avatar_url) avatar.src = post.user.avatar_url;
  $("time", li).textContent = new Date(post.timestamp).toLocaleString();
  $("time", li).dateTime = post.timestamp;
  $(".edited", li).hidden = !post.edited_at;
  $(".content", li).textContent = post.content;
  setImage($(".media", li), post);
  $(".like-count", li).textContent = post.like_count;
  $(".like", li).classList.toggle("liked", post.is_liked);
  $(".comment-count", li).textContent = post.comment_count;
  const mine = post.user.id === me.sub;
  $(".edit", li).hidden = !mine;
  $(".delete", li).hidden = !mine;
  $(".report", li).hidden = mine;
  $(".block", li).hidden = mine;
  return li;
}

/** Whether the signed-in token names a moderator group (the API decides; this only shows the view). */
function isModerator() {
  const groups = [me?.[config.roleClaim] ?? []].flat();
  return groups.some((g) => (config.moderatorGroups ?? []).includes(g));
}

/** Reports a post or comment: asks why, then sends it; the button says it is done. */
async function report(path, button) {
  const reason = prompt(`Why report this? (${REASONS.join(", ")})`, "spam");
  if (reason === null) return;
  const body = { reason: reason.trim() };
  if (body.reason === "other") body.note = prompt("Tell the moderators what is wrong") ?? "";
  await api.create(path, body);
  button.textContent = "Reported";
  button.disabled = true;
}

/** Blocks a user: their posts and comments leave this page now, and lists leave them out. */
async function block(user) {
  if (!confirm(`Block ${user.username}? You will no longer see their posts and comments.`)) return;
  await api.post(`/users/${encodeURIComponent(user.id)}/block/`);
  blocked.add(user.id);
  for (const [id, li] of posts) {
    if (li.dataset.author === user.id) {
      li.remove();
      posts.delete(id);
    }
  }
  document.querySelectorAll(".comment").forEach((c) => c.dataset.author === user.id && c.remove());
}

function add(post, { atTop = false } = {}) {
  if (posts.has(post.id)) return render(post, posts.get(post.id));
  const li = render(post);
  posts.set(post.id, li);
  if (atTop) {
    $("#feed").prepend(li);
    li.classList.add("fresh");
  } else {
    $("#feed").append(li);
  }
  live?.follow(post.id);
  wire(li);
  return li;
}

function comment(c) {
  const li = document.createElement("li");
  li.className = "comment";
  li.dataset.id = c.id;
  li.dataset.author = c.user.id;
  const who = document.createElement("strong");
  who.textContent = c.user.username;
  const text = document.createElement("span");
  text.className = "comment-text";
  text.textContent = c.content;
  li.append(who, ": ", text);
  if (c.user.id === me.sub) {
    const path = `/posts/${c.post_id}/comments/${c.id}/`;
    const edit = Object.assign(document.createElement("button"), { type: "button", textContent: "Edit", className: "edit-comment" });
    edit.onclick = () =>
      attempt(async () => {
        const content = prompt("Edit your comment", text.textContent);
        if (content !== null) text.textContent = (await api.patch(path, { content })).content;
      });
    const remove = Object.assign(document.createElement("button"), { type: "button", textContent: "Delete", className: "delete-comment" });
    remove.onclick = () =>
      attempt(async () => {
        if (!confirm("Delete this comment?")) return;
        await api.delete(path);
        li.remove();
      });
    li.append(" ", edit, " ", remove);
  } else {
    const flag = Object.assign(document.createElement("button"), { type: "button", textContent: "Report", className: "report-comment" });
    flag.onclick = () => attempt(() => report(`/posts/${c.post_id}/comments/${c.id}/report/`, flag));
    const shun = Object.assign(document.createElement("button"), { type: "button", textContent: "Block", className: "block-comment" });
    shun.onclick = () => attempt(() => block(c.user));
    li.append(" ", flag, " ", shun);
  }
  return li;
}

async function loadComments(li) {
  const list = $(".comment-list", li);
  const page = await api.get(`/posts/${li.dataset.id}/comments/?limit=50`);
  list.replaceChildren(...page.comments.map(comment));
}

function wire(li) {
  const id = li.dataset.id;
  // Sets the like the button shows the opposite of (PUT or DELETE): a repeated click or a
  // retried request leaves the state asked for.
  $(".like", li).onclick = () =>
    attempt(async () => {
      const liked = $(".like", li).classList.contains("liked");
      const state = liked ? await api.delete(`/posts/${id}/like/`) : await api.put(`/posts/${id}/like/`);
      $(".like-count", li).textContent = state.like_count;
      $(".like", li).classList.toggle("liked", state.is_liked);
    });
  $(".toggle-comments", li).onclick = () =>
    attempt(async () => {
      const section = $(".comments", li);
      section.hidden = !section.hidden;
      if (!section.hidden) await loadComments(li);
    });
  $(".new-comment", li).onsubmit = (e) => {
    e.preventDefault();
    attempt(async () => {
      const input = e.target.elements.content;
      const created = await api.create(`/posts/${id}/comments/`, { content: input.value });
      input.value = "";
      if (!$(`.comment[data-id="${created.id}"]`, li)) $(".comment-list", li).append(comment(created));
    });
  };
  $(".edit", li).onclick = () =>
    attempt(async () => {
      const content = prompt("Edit your post", $(".content", li).textContent);
      if (content !== null) render(await api.patch(`/posts/${id}/`, { content }), li);
    });
  $(".delete", li).onclick = () =>
    attempt(async () => {
      if (!confirm("Delete this post?")) return;
      await api.delete(`/posts/${id}/`);
      li.remove();
      posts.delete(id);
    });
  $(".report", li).onclick = () => attempt(() => report(`/posts/${id}/report/`, $(".report", li)));
  $(".block", li).onclick = () =>
    attempt(() => block({ id: li.dataset.author, username: $(".author", li).textContent }));
}

/** A moderator action, with the reason asked for; then the view is read again. */
async function moderate(body, question) {
  const reason = prompt(question, body.action.startsWith("resolve") ? "no violation" : "breaks the rules");
  if (reason === null) return;
  await api.post("/moderation/actions/", { ...body, reason });
  await loadModeration();
}

function queueEntry(entry) {
  const li = document.createElement("li");
  li.className = `report-entry ${entry.status}`;
  const target = entry.target;
  li.dataset.target = target.comment_id ?? target.post_id;
  const what = entry.comment ?? entry.post;
  const reasons = Object.entries(entry.reasons).map(([r, n]) => `${r} ×${n}`).join(", ");
  const text = document.createElement("span");
  text.className = "reported-text";
  text.textContent = `${target.type} by ${what?.user.username ?? "(deleted)"}: “${what?.content ?? ""}” — ${entry.report_count} report(s): ${reasons}`;
  li.append(text);
  if (entry.status === "open") {
    const remove = Object.assign(document.createElement("button"), { type: "button", textContent: "Remove", className: "mod-remove" });
    const ids = { post_id: target.post_id, ...(target.comment_id ? { comment_id: target.comment_id } : {}) };
    remove.onclick = () => attempt(() => moderate({ action: `remove_${target.type}`, ...ids }, "Why remove it?"));
    const dismiss = Object.assign(document.createElement("button"), { type: "button", textContent: "Dismiss", className: "mod-dismiss" });
    dismiss.onclick = () => attempt(() => moderate({ action: "resolve_reports", outcome: "dismissed", ...ids }, "Why dismiss the reports?"));
    li.append(" ", remove, " ", dismiss);
  } else {
    li.append(` (${entry.outcome})`);
  }
  return li;
}

function logEntry(entry) {
  const li = document.createElement("li");
  li.className = "log-entry";
  li.dataset.action = entry.action;
  li.textContent = `${new Date(entry.created_at).toLocaleString()} ${entry.action} by ${entry.moderator_id}: ${entry.reason}`;
  if (entry.action === "remove_post" || entry.action === "remove_comment") {
    const kind = entry.action.slice("remove_".length);
    const restore = Object.assign(document.createElement("button"), { type: "button", textContent: "Restore", className: "mod-restore" });
    const ids = { post_id: entry.post_id, ...(entry.comment_id ? { comment_id: entry.comment_id } : {}) };
    restore.onclick = () => attempt(() => moderate({ action: `restore_${kind}`, ...ids }, "Why restore it?"));
    li.append(" ", restore);
  }
  return li;
}

/** The report queue and the log (moderators only). */
async function loadModeration() {
  const [queue, log] = await Promise.all([api.get("/moderation/reports/?limit=50"), api.get("/moderation/actions/?limit=20")]);
  $("#queue").replaceChildren(...queue.reports.map(queueEntry));
  $("#mod-log").replaceChildren(...log.actions.map(logEntry));
}

let loading = false;

/** Whether the end of the feed is on screen (more should be loaded). */
function moreInView() {
  const edge = $("#more").getBoundingClientRect();
  return edge.top < innerHeight && edge.bottom >= 0;
}

/**
 * Loads pages while the end of the feed is on screen: the observer fires only when that
 * changes, so a page that left it in view (a tall screen), or failed (a 503 under load), would
 * otherwise stop the feed where it is. A failure the server may get over (429, 5xx, the
 * network) is tried again after its Retry-After or a growing pause; any other is shown.
 */
async function loadMore() {
  if (loading) return;
  loading = true;
  try {
    for (let failures = 0; nextPage !== null && moreInView(); ) {
      try {
        const page = await api.get(nextPage ?? "/posts/?limit=20");
        page.posts.filter((p) => !blocked.has(p.user.id)).forEach((p) => add(p));
        nextPage = page.next_page;
        failures = 0;
        $("#error").hidden = true;
      } catch (error) {
        showError(error);
        if (error instanceof ApiError && error.status !== 429 && error.status < 500) return;
        failures += 1;
        const pause = error.retryAfter ? error.retryAfter * 1000 : Math.min(8000, 500 * 2 ** failures);
        await new Promise((resolve) => setTimeout(resolve, pause));
      }
    }
  } finally {
    loading = false;
    $("#feed-end").hidden = nextPage !== null;
  }
}

function onLive(message) {
  const li = posts.get(message.post_id ?? message.post?.id);
  switch (message.type) {
    case "post.created":
    case "post.restored":
      // The server tells everyone; the page leaves out whom its user blocks.
      if (!blocked.has(message.post.user.id)) add(message.post, { atTop: true });
      break;
    case "post.updated":
      if (li) render({ ...message.post, is_liked: $(".like", li).classList.contains("liked") }, li);
      break;
    case "post.deleted":
    case "post.removed":
      li?.remove();
      posts.delete(message.post_id);
      break;
    case "like.updated":
      if (li) $(".like-count", li).textContent = message.like_count;
      break;
    case "comment.created":
    case "comment.restored":
    case "comment.deleted":
    case "comment.removed":
      if (!li) break;
      $(".comment-count", li).textContent = message.comment_count;
      if (!$(".comments", li).hidden) {
        const arrived = message.comment;
        if (arrived && !blocked.has(arrived.user.id) && !$(`.comment[data-id="${arrived.id}"]`, li)) {
          $(".comment-list", li).append(comment(arrived));
        }
        if (message.comment_id) $(`.comment[data-id="${message.comment_id}"]`, li)?.remove();
      }
      break;
    case "media.ready":
    case "media.rejected":
      pendingMedia.get(message.id)?.(message);
      break;
  }
}

/** Waits until process-media has decided: the live event, or polling when offline. */
function mediaDecided(id) {
  return new Promise((resolve) => {
    pendingMedia.set(id, resolve);
    const poll = async () => {
      if (!pendingMedia.has(id)) return;
      const media = await api.get(`/media/${id}/`).catch(() => null);
      if (media && media.status !== "pending") {
        resolve({ type: media.status === "ready" ? "media.ready" : "media.rejected", ...media });
      } else setTimeout(poll, 1000);
    };
    setTimeout(poll, 1000);
  }).finally(() => pendingMedia.delete(id));
}

$("#new-post").onsubmit = (e) => {
  e.preventDefault();
  const form = e.target;
  attempt(async () => {
    let media_url = null;
    const file = form.elements.image.files[0];
    if (file) {
      const progress = $("#upload-progress");
      progress.hidden = false;
      const media = await api.uploadImage(file, (f) => (progress.value = Math.round(f * 100))).finally(() => (progress.hidden = true));
      const decided = await mediaDecided(media.id);
      if (decided.type === "media.rejected") throw new Error(`The image was refused: ${decided.reason}`);
      media_url = media.url;
    }
    const post = await api.create("/posts/", { content: form.elements.content.value, media_url });
    add(post, { atTop: true });
    form.reset();
  });
};

/**
 * Whether a token has time left: the API accepts one up to 30 s past its `exp` (clock skew);
 * a few seconds are kept for the connection to be made.
 */
const usable = (t) => claims(t).exp + 25 > Date.now() / 1000;

/** Uses `fresh` from now on, for requests and the next WebSocket connection. */
function adopt(fresh) {
  token = fresh;
  me = claims(fresh);
  if (api) api.token = fresh;
  sessionStorage.setItem("token", fresh);
}

/** A token from forum-local's development mint (never offered by a deployed stack). */
async function mintToken(username, ttl, role) {
  const response = await fetch("local/token", { method: "POST", body: JSON.stringify({ username, ttl, role }) });
  if (!response.ok) throw new Error(await response.text());
  return (await response.json()).token;
}

/**
 * The token to (re)connect with: the current one while it has time left; locally, a fresh one
 * for the same name; otherwise none, and the page says the session ended.
 */
async function connectToken() {
  if (usable(token)) return token;
  if (config.mintTokens) {
    const fresh = await mintToken(me.preferred_username).catch(() => null);
    if (fresh) {
      adopt(fresh);
      return fresh;
    }
  }
  sessionStorage.removeItem("token");
  showError(new Error("Your session has ended: sign in again to keep seeing live updates."));
  $("#sign-in").hidden = false;
  return null;
}

function signIn(fresh) {
  adopt(fresh);
  api = new Api(config.apiBase, token);
  $("#sign-in").hidden = true;
  $("#signed-in").hidden = false;
  $("#me").textContent = me.preferred_username ?? me.sub;
  $("main").hidden = false;
  live?.close();
  live = new Live(config.wsUrl, connectToken, {
    onMessage: onLive,
    onStatus: (status) => {
      $("#live").textContent = status;
      $("#live").classList.toggle("online", status === "online");
    },
  });
  for (const id of posts.keys()) live.follow(id);
  $("#moderation").hidden = !isModerator();
  if (isModerator()) {
    $("#refresh-moderation").onclick = () => attempt(loadModeration);
    attempt(loadModeration);
  }
  // Whom the user blocks, so live events and pages leave them out here too.
  attempt(async () => {
    for (let page = await api.get("/users/me/blocks/?limit=100"); ; page = await api.get(page.next_page)) {
      page.blocks.forEach((b) => blocked.add(b.user.id));
      if (!page.next_page) break;
    }
  });
  new IntersectionObserver((entries) => entries.some((e) => e.isIntersecting) && loadMore()).observe($("#more"));
}

$("#sign-in").onsubmit = (e) => {
  e.preventDefault();
  signIn(e.target.elements.token.value.trim());
};
$("#sign-out").onclick = () => {
  sessionStorage.removeItem("token");
  location.reload();
};
if (config.mintTokens) {
  $("#local-mint").hidden = false;
  $("#mint").onclick = () =>
    attempt(async () => {
      const form = $("#sign-in").elements;
      signIn(await mintToken(form.username.value, undefined, form.moderator.checked ? "moderator" : undefined));
    });
}
const saved = sessionStorage.getItem("token");
if (saved && usable(saved)) signIn(saved);
else $("#sign-in").hidden = false;
