// tl_lab camera widget (anywidget front-end module): webcam capture into class folders, and a live classifier.
//
// The browser side only shows the camera and moves frames: a frame is drawn from the <video> into a square canvas
// of `size` pixels (centre crop), encoded as JPEG and sent to the kernel as a binary buffer with a custom message.
// The kernel saves it (capture mode) or classifies it and replies with the top classes (classify mode).
// Messages to the kernel: {type: "capture", class_name}, {type: "undo"}, {type: "add-class", name},
// {type: "classify", id}. From the kernel: {type: "saved" | "undone" | "error", ...}, {type: "prediction", id, top}.

const HOLD_MS = 150; // while the capture button is held down, one frame every HOLD_MS
const HOLD_DELAY_MS = 400; // ... once it has been held this long (a click is one frame, however slow the page)
const MAX_IN_FLIGHT = 4; // captures sent but not yet answered; holding waits rather than queueing more
const REPLY_TIMEOUT_MS = 5000; // a classify request not answered by then is given up (the next frame is sent)

/** What went wrong when starting the camera, as {status, message}: a learner reads the message. */
export function describeCameraProblem({ secure, hasMediaDevices, errorName, errorMessage, host, protocol }) {
  if (!secure) {
    return {
      status: "insecure",
      message:
        `The camera needs https or localhost: this page is served over plain ${String(protocol || "http:").replace(":", "")} ` +
        `from ${host}, and browsers only allow the camera on secure pages. Open Jupyter via localhost ` +
        `(e.g. an SSH tunnel: ssh -L 8888:localhost:8888 <server>, then http://localhost:8888), or serve it over ` +
        `https (JupyterHub and Binder are).`,
    };
  }
  if (!hasMediaDevices) {
    return {
      status: "no-camera",
      message:
        "This browser gives pages no camera access (navigator.mediaDevices is missing): use a current Chrome, " +
        "Edge, Firefox or Safari.",
    };
  }
  switch (errorName) {
    case "NotFoundError":
    case "OverconstrainedError":
    case "DevicesNotFoundError":
      return {
        status: "no-camera",
        message:
          "No camera found: connect a webcam (or switch it on in your system's privacy settings), then click " +
          "Start camera again.",
      };
    case "NotAllowedError":
    case "PermissionDeniedError":
    case "SecurityError":
      return {
        status: "denied",
        message:
          "Camera permission was denied. Allow the camera for this site (the camera icon in the address bar, or " +
          "the site settings; on macOS also System Settings > Privacy > Camera for the browser), then click " +
          "Start camera again.",
      };
    case "NotReadableError":
    case "TrackStartError":
    case "AbortError":
      return {
        status: "in-use",
        message:
          "The camera could not be started: another application or tab may be using it. Close it (video calls, " +
          "other notebooks) and click Start camera again.",
      };
    default:
      return {
        status: "error",
        message: `Could not start the camera (${errorName || "Error"}: ${errorMessage || "no details"}).`,
      };
  }
}

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "style") el.style.cssText = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v);
  }
  for (const c of children) el.append(c);
  return el;
}

const CSS = `
.tl-camera { font-size: 13px; display: flex; gap: 12px; flex-wrap: wrap; align-items: flex-start; }
.tl-camera video { width: 240px; height: 240px; object-fit: cover; background: #222; border-radius: 4px; }
.tl-camera button { margin: 2px 4px 2px 0; padding: 3px 10px; cursor: pointer; }
.tl-cam-message { white-space: pre-wrap; line-height: 1.4; margin: 4px 0; max-width: 560px; }
.tl-cam-message.bad { color: #b00020; font-weight: bold; }
.tl-camera table { border-collapse: collapse; margin: 4px 0; }
.tl-camera td, .tl-camera th { border-bottom: 1px solid #ddd; padding: 2px 8px; text-align: left; }
.tl-camera td.num { text-align: right; font-variant-numeric: tabular-nums; }
.tl-camera .tl-cam-thumbs img { width: 48px; height: 48px; margin: 1px; border-radius: 2px; }
.tl-camera .tl-cam-bar { background: #1976d2; height: 10px; display: inline-block; vertical-align: middle; }
`;

function grabFrame(video, canvas, size) {
  const w = video.videoWidth, h = video.videoHeight;
  if (!w || !h) return Promise.resolve(null);
  const side = Math.min(w, h);
  canvas.width = size;
  canvas.height = size;
  canvas.getContext("2d").drawImage(video, (w - side) / 2, (h - side) / 2, side, side, 0, 0, size, size);
  return new Promise((resolve) => canvas.toBlob((blob) => resolve(blob), "image/jpeg", 0.92));
}

function render({ model, el }) {
  const mode = model.get("mode");
  const video = h("video", { autoplay: "", playsinline: "", muted: "" });
  video.muted = true;
  const canvas = document.createElement("canvas");
  const message = h("div", { class: "tl-cam-message" });
  const startBtn = h("button", { class: "tl-cam-start" }, "Start camera");
  let stream = null;
  let disposed = false;

  function setStatus(status, text, bad = false) {
    message.textContent = text;
    message.classList.toggle("bad", bad);
    model.set("status", status);
    model.set("message", text);
    model.save_changes();
  }

  async function start() {
    const problem = (errorName, errorMessage) =>
      describeCameraProblem({
        secure: window.isSecureContext, hasMediaDevices: !!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia),
        errorName, errorMessage, host: location.host, protocol: location.protocol,
      });
    const early = problem("", "");
    if (early.status === "insecure" || !(navigator.mediaDevices && navigator.mediaDevices.getUserMedia)) {
      setStatus(early.status, early.message, true);
      return;
    }
    setStatus("starting", "Starting the camera… (allow it if the browser asks)");
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 640 }, height: { ideal: 480 } }, audio: false });
    } catch (err) {
      const p = problem(err && err.name, err && err.message);
      setStatus(p.status, p.message, true);
      return;
    }
    if (disposed) return stop();
    video.srcObject = stream;
    try { await video.play(); } catch (e) { /* autoplay of a muted video is allowed; the frames still arrive */ }
    startBtn.textContent = "Stop camera";
    setStatus("live", mode === "capture"
      ? "Camera on: pick a class, then click (or hold) Capture."
      : "Camera on: classifying what the camera sees.");
    onLive();
  }

  function stop() {
    if (stream) stream.getTracks().forEach((t) => t.stop());
    stream = null;
    video.srcObject = null;
    startBtn.textContent = "Start camera";
  }

  startBtn.addEventListener("click", () => {
    if (stream) { stop(); setStatus("stopped", "Camera stopped."); }
    else start();
  });

  let onLive = () => {};
  const panel = h("div");
  el.append(h("div", { class: `tl-camera-${mode}` }, h("style", {}, CSS),
    h("div", { class: "tl-camera" }, h("div", {}, video, h("div", {}, startBtn)), panel), message));
  const cleanups = [];

  if (mode === "capture") {
    const select = h("select", { class: "tl-cam-class", title: "class the next captures go into" });
    const newName = h("input", { class: "tl-cam-new", type: "text", placeholder: "new class name", size: "14" });
    const addBtn = h("button", { class: "tl-cam-add" }, "Add class");
    const captureBtn = h("button", { class: "tl-cam-capture", title: "click: one frame; hold: a frame every 150 ms" }, "Capture");
    const undoBtn = h("button", { class: "tl-cam-undo" }, "Undo last");
    const counts = h("div", { class: "tl-cam-counts" });
    const thumbs = h("div", { class: "tl-cam-thumbs" });
    panel.append(h("div", {}, "class ", select, " ", newName, addBtn), h("div", {}, captureBtn, undoBtn), counts, thumbs);

    const drawClasses = () => {
      const classes = model.get("classes"), current = model.get("current_class");
      select.replaceChildren(...classes.map((c) => h("option", { value: c }, c)));
      select.value = current;
    };
    const drawCounts = () => {
      const c = model.get("counts");
      const rows = Object.keys(c).map((k) => h("tr", {}, h("td", {}, k), h("td", { class: "num" }, String(c[k]))));
      counts.replaceChildren(h("table", {}, h("tr", {}, h("th", {}, "class"), h("th", {}, "images")), ...rows));
    };
    drawClasses(); drawCounts();
    model.on("change:classes", drawClasses);
    model.on("change:current_class", drawClasses);
    model.on("change:counts", drawCounts);
    select.addEventListener("change", () => { model.set("current_class", select.value); model.save_changes(); });
    const addClass = () => { model.send({ type: "add-class", name: newName.value }); };
    addBtn.addEventListener("click", addClass);
    newName.addEventListener("keydown", (e) => { if (e.key === "Enter") addClass(); });

    let inFlight = 0;
    async function captureOne() {
      if (!stream) { setStatus(model.get("status"), "Start the camera first.", true); return; }
      if (inFlight >= MAX_IN_FLIGHT) {
        setStatus(model.get("status"), "Waiting for the kernel to save the last frames (is a cell still running?).");
        return;
      }
      const name = model.get("current_class");
      if (!name) { setStatus("live", "Choose or add a class first (type a name, then Add class).", true); return; }
      const blob = await grabFrame(video, canvas, model.get("size"));
      if (!blob) return;
      inFlight += 1;
      const url = URL.createObjectURL(blob);
      thumbs.prepend(h("img", { src: url, title: name, alt: name }));
      while (thumbs.children.length > 8) { URL.revokeObjectURL(thumbs.lastChild.src); thumbs.lastChild.remove(); }
      model.send({ type: "capture", class_name: name }, undefined, [await blob.arrayBuffer()]);
    }
    let holdDelay = null, holdTimer = null;
    const release = () => {
      clearTimeout(holdDelay); clearInterval(holdTimer); holdDelay = holdTimer = null;
    };
    captureBtn.addEventListener("pointerdown", (e) => {
      if (e.button !== 0) return;
      release();
      captureOne(); // a click is exactly one frame; held past HOLD_DELAY_MS, a frame every HOLD_MS
      holdDelay = setTimeout(() => { holdTimer = setInterval(captureOne, HOLD_MS); }, HOLD_DELAY_MS);
    });
    for (const ev of ["pointerup", "pointerleave", "pointercancel"]) captureBtn.addEventListener(ev, release);
    captureBtn.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); captureOne(); } });
    undoBtn.addEventListener("click", () => model.send({ type: "undo" }));
    const onMsg = (msg) => {
      if (!msg || !msg.type) return;
      if (msg.type === "saved" || msg.type === "capture-failed") inFlight = Math.max(0, inFlight - 1);
      if (msg.type === "saved") setStatus("live", `Saved ${msg.file} (${msg.class_name}: ${msg.count} images).`);
      else if (msg.type === "undone") {
        setStatus(model.get("status"), msg.file ? `Removed ${msg.file}.` : "Nothing to undo: this widget has not saved any frame yet (or all were undone).");
        if (msg.file && thumbs.firstChild) { URL.revokeObjectURL(thumbs.firstChild.src); thumbs.firstChild.remove(); }
      } else if (msg.type === "capture-failed" || msg.type === "error") setStatus(model.get("status"), msg.message, true);
      else if (msg.type === "class-added") { newName.value = ""; setStatus(model.get("status"), `Class ${msg.name}: captures now go into ${msg.folder}`); }
    };
    model.on("msg:custom", onMsg);
    cleanups.push(release);
  } else {
    const top = h("div", { class: "tl-cam-top" }, "(no prediction yet)");
    const fps = h("div", { class: "tl-cam-fps" }, "");
    panel.append(h("div", { style: "font-weight:bold" }, "What the model sees"), top, fps);
    let waiting = null; // {id, sent}
    let nextId = 1;
    const replies = []; // arrival times of the last replies, for frames per second
    let lastSaved = 0;
    let timer = null;
    async function tick() {
      if (!stream || disposed) return;
      const now = performance.now();
      if (waiting && now - waiting.sent > 2000) fps.textContent = "waiting for the kernel (is a cell still running?)";
      if (waiting && now - waiting.sent < REPLY_TIMEOUT_MS) return;
      if (replies.length && now - replies[replies.length - 1] < model.get("interval_ms")) return;
      waiting = { id: nextId++, sent: now };
      const blob = await grabFrame(video, canvas, model.get("size"));
      if (!blob) { waiting = null; return; }
      model.send({ type: "classify", id: waiting.id }, undefined, [await blob.arrayBuffer()]);
    }
    onLive = () => { if (!timer) timer = setInterval(tick, 20); };
    const onMsg = (msg) => {
      if (!msg || !msg.type) return;
      if (msg.type === "error") { setStatus(model.get("status"), msg.message, true); waiting = null; return; }
      if (msg.type !== "prediction") return;
      if (waiting && msg.id === waiting.id) waiting = null;
      const now = performance.now();
      replies.push(now);
      while (replies.length > 20) replies.shift();
      top.replaceChildren(...msg.top.map(([name, p]) => h("div", { class: "tl-cam-row" },
        h("span", { class: "tl-cam-bar", style: `width:${Math.round(p * 120)}px` }), " ",
        h("b", { class: "tl-cam-name" }, name), ` ${(p * 100).toFixed(1)}%`)));
      if (replies.length >= 2) {
        const rate = (replies.length - 1) * 1000 / (now - replies[0]);
        fps.textContent = `${rate.toFixed(1)} frames per second (${model.get("size")} px frames; ` +
          `the model took ${Math.round(msg.ms)} ms of each)`;
        if (now - lastSaved > 1000) { lastSaved = now; model.set("fps", rate); model.save_changes(); }
      }
    };
    model.on("msg:custom", onMsg);
    cleanups.push(() => { if (timer) clearInterval(timer); });
  }

  return () => {
    disposed = true;
    cleanups.forEach((f) => f());
    stop();
  };
}

export default { render };
