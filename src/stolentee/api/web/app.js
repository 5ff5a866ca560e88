// stolentee upload page: plain JS, no build step, public API only.
"use strict";

(function () {
  const KEY_STORAGE = "stolentee.apiKey";
  const COLOR_STORAGE = "stolentee.shirtColor";
  const POLL_FIRST_MS = 400;
  const POLL_MAX_MS = 5000;
  const POLL_GROWTH = 1.5;
  const POLL_GIVE_UP_MS = 15 * 60 * 1000;
  const MAX_NETWORK_FAILURES = 5;

  const $ = (id) => document.getElementById(id);
  const form = $("upload-form");
  const fileInput = $("file");
  const dropZone = $("drop-zone");
  const preview = $("preview");
  const keyInput = $("api-key");
  const submit = $("submit");
  const statusEl = $("status");
  const errorEl = $("error");
  const result = $("result");
  const cutout = $("cutout");
  const mockupCutout = $("mockup-cutout");
  const download = $("download");
  const shirtBody = $("shirt-body");
  const colorInput = $("shirt-color");

  let selectedFile = null;
  let previewUrl = null;
  let pollTimer = null;
  let run = 0; // incremented per upload, so a stale poll loop stops

  // ---- storage (localStorage may be unavailable, e.g. in private modes) ----
  function load(name) {
    try {
      return window.localStorage.getItem(name) || "";
    } catch (_err) {
      return "";
    }
  }
  function save(name, value) {
    try {
      if (value) window.localStorage.setItem(name, value);
      else window.localStorage.removeItem(name);
    } catch (_err) {
      /* not persisted: fine */
    }
  }

  // ---- status and errors ----
  const STATUS_TEXT = {
    idle: "Choose an image to start.",
    uploading: "Uploading…",
    queued: "Queued: waiting for a worker…",
    processing: "Processing: removing the background…",
    done: "Done.",
    failed: "Failed.",
  };
  function setStatus(state, text) {
    statusEl.dataset.status = state;
    statusEl.textContent = text || STATUS_TEXT[state] || state;
  }
  function showError(message) {
    errorEl.textContent = message;
    errorEl.hidden = false;
  }
  function clearError() {
    errorEl.textContent = "";
    errorEl.hidden = true;
  }

  // The API answers errors as {"errors": [{"title", "code", "detail"}]}.
  async function errorMessage(response) {
    let body = null;
    try {
      body = await response.json();
    } catch (_err) {
      body = null;
    }
    const errors = body && Array.isArray(body.errors) ? body.errors : [];
    if (errors.length === 0) {
      return `HTTP ${response.status} ${response.statusText}`.trim();
    }
    return errors
      .map((e) => {
        const head = e.title || e.code || "Error";
        const code = e.code ? ` (${e.code})` : "";
        return e.detail ? `${head}${code}: ${e.detail}` : `${head}${code}`;
      })
      .join("\n");
  }

  function headers() {
    const key = keyInput.value.trim();
    return key ? { "X-Api-Key": key } : {};
  }

  // ---- file selection and drag-and-drop ----
  function selectFile(file) {
    selectedFile = file || null;
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = null;
    if (selectedFile) {
      previewUrl = URL.createObjectURL(selectedFile);
      preview.src = previewUrl;
      preview.hidden = false;
      setStatus("idle", `Selected ${selectedFile.name}.`);
    } else {
      preview.hidden = true;
      preview.removeAttribute("src");
    }
  }
  fileInput.addEventListener("change", () => selectFile(fileInput.files[0]));
  ["dragenter", "dragover"].forEach((name) =>
    dropZone.addEventListener(name, (event) => {
      event.preventDefault();
      dropZone.classList.add("dragging");
    })
  );
  ["dragleave", "drop"].forEach((name) =>
    dropZone.addEventListener(name, () => dropZone.classList.remove("dragging"))
  );
  dropZone.addEventListener("drop", (event) => {
    event.preventDefault();
    const files = event.dataTransfer && event.dataTransfer.files;
    if (files && files.length > 0) selectFile(files[0]);
  });

  // ---- shirt colour ----
  function setShirtColor(color) {
    shirtBody.setAttribute("fill", color);
    colorInput.value = color;
    document.querySelectorAll(".swatch").forEach((swatch) => {
      swatch.setAttribute("aria-pressed", String(swatch.dataset.color === color));
    });
    save(COLOR_STORAGE, color);
  }
  document.querySelectorAll(".swatch").forEach((swatch) => {
    swatch.style.backgroundColor = swatch.dataset.color;
    swatch.addEventListener("click", () => setShirtColor(swatch.dataset.color));
  });
  colorInput.addEventListener("input", () => setShirtColor(colorInput.value));
  cutout.addEventListener("error", () => {
    if (cutout.getAttribute("src")) showError("The cutout image could not be loaded.");
  });

  // ---- upload and poll ----
  function showDesign(design) {
    if (design.status === "done" && design.cutout && design.cutout.url) {
      setStatus("done", `Done${design.provider ? ` (${design.provider})` : ""}.`);
      cutout.src = design.cutout.url;
      mockupCutout.src = design.cutout.url;
      download.href = design.cutout.url;
      const ext = design.format || "png";
      download.setAttribute("download", `design-${design.id}.${ext}`);
      result.hidden = false;
      return true;
    }
    if (design.status === "failed") {
      setStatus("failed");
      showError(design.error || "The design could not be processed.");
      return true;
    }
    setStatus(design.status in STATUS_TEXT ? design.status : "queued");
    return false;
  }

  function poll(designId, myRun) {
    const started = Date.now();
    let delay = POLL_FIRST_MS;
    let failures = 0;
    const tick = async () => {
      if (myRun !== run) return;
      let response;
      try {
        response = await fetch(`/v1/designs/${encodeURIComponent(designId)}`, {
          headers: headers(),
          cache: "no-store",
        });
      } catch (_err) {
        failures += 1;
        if (failures >= MAX_NETWORK_FAILURES) {
          setStatus("failed", "Lost contact with the server.");
          showError("The server cannot be reached; reload the page to try again.");
          return finish();
        }
        return schedule();
      }
      if (myRun !== run) return;
      if (!response.ok) {
        setStatus("failed", "Could not read the design's status.");
        showError(await errorMessage(response));
        return finish();
      }
      failures = 0;
      if (showDesign(await response.json())) return finish();
      if (Date.now() - started > POLL_GIVE_UP_MS) {
        showError("Still not finished after 15 minutes; stopped watching.");
        return finish();
      }
      schedule();
    };
    const schedule = () => {
      pollTimer = window.setTimeout(tick, delay);
      delay = Math.min(POLL_MAX_MS, Math.round(delay * POLL_GROWTH));
    };
    schedule();
  }

  function finish() {
    submit.disabled = false;
    form.setAttribute("aria-busy", "false");
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError();
    if (!selectedFile) {
      showError("Choose an image file first.");
      fileInput.focus();
      return;
    }
    run += 1;
    const myRun = run;
    if (pollTimer) window.clearTimeout(pollTimer);
    result.hidden = true;
    submit.disabled = true;
    form.setAttribute("aria-busy", "true");
    save(KEY_STORAGE, keyInput.value.trim());

    const body = new FormData();
    body.append("file", selectedFile, selectedFile.name);
    body.append("type", $("type").value);
    body.append("format", $("format").value);
    setStatus("uploading");
    let response;
    try {
      response = await fetch("/v1/designs", { method: "POST", headers: headers(), body });
    } catch (_err) {
      setStatus("failed", "Upload failed.");
      showError("The server cannot be reached.");
      return finish();
    }
    if (!response.ok) {
      setStatus("failed", "Upload refused.");
      const message = await errorMessage(response);
      showError(message);
      if (response.status === 403) document.getElementById("key-details").open = true;
      return finish();
    }
    const design = await response.json();
    statusEl.dataset.designId = design.id;
    if (showDesign(design)) return finish();
    poll(design.id, myRun);
  });

  // ---- start-up ----
  keyInput.value = load(KEY_STORAGE);
  if (keyInput.value) $("key-details").open = true;
  setShirtColor(load(COLOR_STORAGE) || "#ffffff");
})();
