"""The browser's live page, /live/: choose a face, Start, speak; the talking face comes back
over the live WebSocket (facetalk.web.live) and is drawn as it arrives, with the microphone's
sound played the same delay_s late so picture and sound stay together. Everything is served
by this server (no CDN); the studio shows it in its Live tab.

window.liveLog (for tests and the curious): frames (each frame's header), levels ([audio
time sent, RMS] per microphone chunk), shown (the header of the frame on the canvas)."""

from __future__ import annotations

PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>facetalk live</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body { font-family: system-ui, sans-serif; margin: 1rem; color: #222; }
form { display: flex; flex-wrap: wrap; gap: .6rem 1.2rem; align-items: end; margin-bottom: .8rem; }
label { display: flex; flex-direction: column; font-size: .9rem; gap: .2rem; }
label.inline { flex-direction: row; align-items: center; }
button { padding: .45rem 1.2rem; font-size: 1rem; }
#status { min-height: 1.4em; }
#status.error { color: #b00020; }
canvas { background: #111; max-width: 100%; height: auto; border-radius: 6px; }
</style></head>
<body>
<form id="live-form" onsubmit="return false">
  <label>Photo or video <input id="live-face" type="file" accept="image/*,video/*"></label>
  <label>or identity <select id="live-identity"><option value="">(none)</option></select></label>
  <label>Size <select id="live-size"><option>256</option><option>384</option><option selected>512</option></select></label>
  <label>Transport <select id="live-transport"><option value="ws" selected>WebSocket</option><option value="rtc">WebRTC</option></select></label>
  <label class="inline"><input id="live-hear" type="checkbox" checked> play the sound with the picture (use headphones)</label>
  <button id="live-start" type="button">Start</button>
  <button id="live-stop" type="button" disabled>Stop</button>
</form>
<p id="status" role="status">Choose a photo, a video or an identity, then Start and speak.</p>
<canvas id="live-view" width="512" height="512" aria-label="the talking face"></canvas>
<video id="live-video" autoplay playsinline hidden aria-label="the talking face (WebRTC)"></video>
<script>
(() => {
  const $ = (id) => document.getElementById(id);
  const status = $("status"), canvas = $("live-view"), g = canvas.getContext("2d");
  const log = window.liveLog = { frames: [], levels: [], shown: null, ended: null };
  let ws = null, ctx = null, mic = null, info = null, sent = 0, pc = null;
  const say = (text, error) => { status.textContent = text; status.className = error ? "error" : ""; };
  fetch("/v1/identities").then(r => r.ok ? r.json() : { identities: [] }).then(d => {
    for (const i of d.identities || []) {
      const o = document.createElement("option"); o.value = o.textContent = i.name; $("live-identity").appendChild(o);
    }
  }).catch(() => {});

  function stopRtc() { if (pc) { pc.close(); pc = null; } }
  function stopAudio() {
    if (mic) { mic.getTracks().forEach(t => t.stop()); mic = null; }
    if (ctx) { ctx.close(); ctx = null; }
  }
  function idle() { $("live-start").disabled = false; $("live-stop").disabled = true; }

  $("live-start").onclick = async () => {
    $("live-start").disabled = true;
    const fd = new FormData();
    if ($("live-face").files[0]) fd.append("face", $("live-face").files[0]);
    if ($("live-identity").value) fd.append("identity", $("live-identity").value);
    fd.append("size", $("live-size").value);
    say("Preparing the face\u2026");
    let r;
    try { r = await fetch("/v1/live", { method: "POST", body: fd }); } catch (e) { say("The server cannot be reached.", true); idle(); return; }
    const body = await r.json().catch(() => ({ detail: "HTTP " + r.status }));
    if (!r.ok) { say(body.detail || ("HTTP " + r.status), true); idle(); return; }
    info = body;
    canvas.width = info.width; canvas.height = info.height;
    try {
      mic = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: true } });
    } catch (e) {
      say("No microphone: " + e.message, true); fetch("/v1/live/" + info.id, { method: "DELETE" }); idle(); return;
    }
    if ($("live-transport").value === "rtc") { await startRtc(); return; }
    ctx = new AudioContext({ sampleRate: info.sample_rate });
    const src = ctx.createMediaStreamSource(mic);
    const node = ctx.createScriptProcessor(1024, 1, 1);
    node.onaudioprocess = (e) => {
      if (!ws || ws.readyState !== 1) return;
      const x = e.inputBuffer.getChannelData(0), pcm = new Int16Array(x.length);
      let s = 0;
      for (let i = 0; i < x.length; i++) { const v = Math.max(-1, Math.min(1, x[i])); pcm[i] = v * 32767; s += v * v; }
      log.levels.push([sent / info.sample_rate, Math.sqrt(s / x.length)]);
      if (log.levels.length > 20000) log.levels.splice(0, 10000);
      sent += x.length;
      ws.send(pcm.buffer);
    };
    const mute = ctx.createGain(); mute.gain.value = 0;
    src.connect(node); node.connect(mute); mute.connect(ctx.destination);
    if ($("live-hear").checked) {
      const d = ctx.createDelay(5); d.delayTime.value = info.delay_s; src.connect(d); d.connect(ctx.destination);
    }
    ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + info.ws);
    ws.binaryType = "arraybuffer";
    ws.onopen = () => { sent = 0; say("Live: speak. The face follows " + info.delay_s + " s behind you."); $("live-stop").disabled = false; };
    ws.onmessage = async (m) => {
      if (typeof m.data === "string") {
        const j = JSON.parse(m.data);
        if (j.type === "end") { log.ended = j; say("Ended: " + j.frames + " frames sent, " + j.skipped + " skipped as late."); }
        else if (j.type === "error") say(j.detail, true);
        return;
      }
      const n = new DataView(m.data).getUint32(0);
      const head = JSON.parse(new TextDecoder().decode(new Uint8Array(m.data, 4, n)));
      log.frames.push(head);  // in arrival order (decoding below may finish out of order)
      if (log.frames.length > 20000) log.frames.splice(0, 10000);
      const bmp = await createImageBitmap(new Blob([new Uint8Array(m.data, 4 + n)], { type: "image/jpeg" }));
      if (!log.shown || head.index > log.shown.index) {  // never draw an older frame over a newer one
        g.drawImage(bmp, 0, 0, canvas.width, canvas.height); log.shown = head;
      }
      bmp.close();
    };
    ws.onclose = (e) => { stopAudio(); ws = null; if (e.reason && !log.ended) say(e.reason, true); idle(); };
  };

  async function startRtc() {
    // WebRTC: the microphone goes as an audio track; the face comes back as video with the
    // same sound delay_s late. No STUN/TURN: only this machine's own addresses.
    const video = $("live-video");
    canvas.hidden = true; video.hidden = false; video.width = info.width; video.height = info.height;
    video.muted = !$("live-hear").checked;
    pc = new RTCPeerConnection({ iceServers: [] });
    mic.getTracks().forEach(t => pc.addTrack(t, mic));
    pc.addTransceiver("video", { direction: "recvonly" });
    const remote = new MediaStream();
    pc.ontrack = (e) => { remote.addTrack(e.track); video.srcObject = remote; };
    const t0 = performance.now();
    const meter = new AudioContext(), an = meter.createAnalyser(), buf = new Float32Array(1024);
    meter.createMediaStreamSource(mic).connect(an);
    const tick = setInterval(() => {  // the microphone's level by wall time (for tests)
      an.getFloatTimeDomainData(buf); let s = 0; for (const v of buf) s += v * v;
      log.levels.push([(performance.now() - t0) / 1000, Math.sqrt(s / buf.length)]);
    }, 20);
    pc.onconnectionstatechange = () => {
      if (pc && pc.connectionState === "connected") { say("Live (WebRTC): speak. The face follows " + info.delay_s + " s behind you."); $("live-stop").disabled = false; }
      if (!pc || ["failed", "closed", "disconnected"].includes(pc.connectionState)) { clearInterval(tick); meter.close(); }
    };
    log.rtcStart = t0;
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((ok) => {  // the server takes a complete offer (no trickle)
      if (pc.iceGatheringState === "complete") return ok();
      pc.onicegatheringstatechange = () => pc.iceGatheringState === "complete" && ok();
      setTimeout(ok, 3000);
    });
    const r = await fetch(info.ws.replace(/\/ws$/, "/offer"), { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sdp: pc.localDescription.sdp, type: "offer" }) });
    const answer = await r.json();
    if (!r.ok) { say(answer.detail || ("HTTP " + r.status), true); stopRtc(); stopAudio(); idle(); return; }
    await pc.setRemoteDescription(answer);
    window.liveRtc = pc;
  }

  $("live-stop").onclick = () => {
    $("live-stop").disabled = true;
    if (pc) { stopRtc(); stopAudio(); say("Ended."); log.ended = { type: "end" }; idle(); return; }
    if (ws && ws.readyState === 1) ws.send(JSON.stringify({ type: "end" }));
    stopAudio();
  };
  window.addEventListener("pagehide", () => { if (ws) ws.close(); stopRtc(); stopAudio(); });
})();
</script>
</body></html>
"""
