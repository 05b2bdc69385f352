"""The web studio: a Gradio app over facetalk.web.service, mounted in the FastAPI app.

Tabs: Create (one render, live progress, the result played in the page), Batch (one
audio for several identities or photos, or a manifest), Identities (learn from footage,
versions, promote, remove), Jobs (the queue, preview, log, cancel, delete, downloads).
Everything shown is read from the job store and the registry, polled by timers, so a
page reload loses nothing.
"""

import html
import time
from pathlib import Path
from urllib.parse import quote

from ..errors import FacetalkError
from ..finish.options import DEFAULT_LABEL_TEXT
from ..jobs.store import FINAL_STATES, JobState
from . import uploads
from .service import RENDER_OPTIONS, Service, preview_dir, tts_available, tts_voices

TICK_S = 0.5  # live progress of the render being followed
TABLE_TICK_S = 2.0  # the jobs and identity tables
TTS_NOTE = "text-to-speech comes with a later version"
# Stages of a render and the share of the whole each ends at (for one overall bar).
_STAGE_END = {"media": 0.03, "speech": 0.15, "face": 0.3, "render": 1.0, "done": 1.0}
_STAGE_WORDS = {"media": "reading the audio", "speech": "analysing the speech", "face": "finding the face",
                "render": "rendering frames", "done": "done", "": "starting"}

CSS = """
.ft-error { color: #b00020; font-weight: 600; }
.ft-ok { color: #1b5e20; }
.ft-progress progress { width: 100%; height: 1.2rem; }
.ft-progress .ft-progress-text { font-variant-numeric: tabular-nums; }
.ft-links a { margin-right: 1.2rem; }
"""


def overall(job) -> float:
    """One fraction for the whole render, from the stage and its own fraction."""
    if job.state == JobState.SUCCEEDED:
        return 1.0
    if job.state != JobState.RUNNING:
        return 0.0
    stages = list(_STAGE_END)
    if job.stage not in _STAGE_END:
        return 0.0
    i = stages.index(job.stage)
    start = _STAGE_END[stages[i - 1]] if i > 0 else 0.0
    return start + (_STAGE_END[job.stage] - start) * float(job.progress)


def progress_html(service: Service, job) -> str:
    if job is None:
        return ""
    pct = round(overall(job) * 100)
    if job.state == JobState.RUNNING:
        words = f"{_STAGE_WORDS.get(job.stage, job.stage)}: {pct}%"
    elif job.state == JobState.QUEUED:
        words = "waiting for a worker" + (f" (attempt {job.attempts + 1})" if job.attempts else "")
    elif job.state == JobState.SUCCEEDED:
        secs = job.metrics.get("seconds")
        words = "done: 100%" + (f" in {secs:.1f} s" if isinstance(secs, (int, float)) else "")
    else:
        words = f"{job.state}"
    err = f'<p class="ft-error" role="alert">{html.escape(service.shown(job.error) or "")}</p>' \
        if job.state in (JobState.FAILED, JobState.CANCELLED) and job.error else ""
    return (f'<div class="ft-progress" data-state="{job.state}" data-progress="{pct}">'
            f'<progress max="100" value="{pct}"></progress> '
            f'<span class="ft-progress-text">job {html.escape(job.id)} ({html.escape(job.name)}): {html.escape(words)}'
            f"</span>{err}</div>")


def error_html(message: str) -> str:
    return f'<p class="ft-error" role="alert">{html.escape(message)}</p>'


def ok_html(message: str) -> str:
    return f'<p class="ft-ok">{html.escape(message)}</p>'


def _file_name(path: str | None) -> str:
    return Path(path).name if path else ""


def _when(t: float | None) -> str:
    return "" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def build_studio(service: Service):
    """The studio as a gr.Blocks (not launched: create_app mounts it)."""
    import gradio as gr
    import pandas as pd

    from ..render.base import available_renderers

    config = service.config
    tts = tts_available()
    renderers = ["auto", *available_renderers()]

    def identity_choices() -> list[str]:
        refs = []
        for ident in service.identities():
            refs.append(ident["name"])
            refs += [v["ref"] for v in ident["versions"]]
        return refs

    def finishing_from(enhance, lut_strength, label, label_text) -> dict:
        text = (label_text or "").strip()
        return {"enhance": bool(enhance), "lut_strength": float(lut_strength if lut_strength is not None else 1.0),
                "label": bool(label), **({"label_text": text} if text else {})}

    def finishing_file(file, role: str, resolve, folder: list):
        """An uploaded LUT or face-restoration model (role "lut" or "enhancer"), checked by
        service.resolve_lut or resolve_enhancer; None when none was given."""
        if not file:
            return None
        folder_path = folder[0] = folder[0] or uploads.new_folder(config.home)
        return resolve(uploads.ingest(Path(file), _file_name(file), role, role, folder_path, config.max_upload_bytes))

    def options_from(identity, identity_face, transcript, renderer, size, fps, still, color_match, crf, seed) -> dict:
        opts = {"identity": identity or None, "identity_face": identity_face or "clip",
                "transcript": (transcript or "").strip() or None, "renderer": None if renderer in (None, "", "auto") else renderer,
                "size": (size or "").strip() or None, "fps": float(fps) if fps not in (None, "") and float(fps) > 0 else None,
                "still": bool(still), "color_match": color_match or "mean", "crf": int(crf if crf is not None else 18),
                "seed": int(seed or 0)}
        assert set(opts) <= set(RENDER_OPTIONS)
        return opts

    def speech_input(audio_file, folder: list):
        if not audio_file:
            return None
        folder_path = folder[0] = folder[0] or uploads.new_folder(config.home)
        up = uploads.ingest(Path(audio_file), _file_name(audio_file), "audio", "audio", folder_path, config.max_upload_bytes)
        return service.resolve(up, "audio", "audio", folder)

    def face_input(face_file, folder: list):
        if not face_file:
            return None
        folder_path = folder[0] = folder[0] or uploads.new_folder(config.home)
        up = uploads.ingest(Path(face_file), _file_name(face_file), "face", "face", folder_path, config.max_upload_bytes)
        return service.resolve(up, "face", "face", folder)

    # -- Create --------------------------------------------------------------------------------

    def submit(face_file, identity, identity_face, audio_file, text, voice, transcript, renderer, size, fps, still,
               color_match, crf, seed, enhance, enhancer_file, lut_file, lut_strength, label, label_text):
        folder: list = [None]
        try:
            if not face_file and not identity:
                raise FacetalkError("give a photo or video of the person, or choose an identity")
            face = face_input(face_file, folder)
            audio = speech_input(audio_file, folder)
            lut = finishing_file(lut_file, "lut", service.resolve_lut, folder)
            enhancer = finishing_file(enhancer_file, "enhancer", service.resolve_enhancer, folder)
            opts = options_from(identity, identity_face, transcript, renderer, size, fps, still, color_match, crf, seed)
            opts.update(finishing_from(enhance, lut_strength, label, label_text))
            if text and text.strip():
                opts.update(text=text.strip(), voice=voice or None)
            job = service.submit(opts, face, audio, lut=lut, enhancer=enhancer)
        except FacetalkError as e:
            uploads.discard(folder[0])
            return error_html(str(e)), None, gr.Timer(active=False), "", None, gr.update(visible=False)
        return (ok_html(f"queued job {job.id}: it starts as soon as a worker is free"), job.id,
                gr.Timer(active=True), progress_html(service, job), None, gr.update(visible=False))

    def follow(job_id):
        if not job_id:
            return gr.Timer(active=False), "", gr.update(), gr.update(), gr.update()
        try:
            job = service.job(job_id)
        except FacetalkError as e:
            return gr.Timer(active=False), error_html(str(e)), gr.update(), gr.update(), gr.update()
        if job.state not in FINAL_STATES:
            return gr.update(), progress_html(service, job), gr.update(), gr.update(), gr.update()
        video, links = None, gr.update(visible=False)
        if job.state == JobState.SUCCEEDED:
            try:
                video = str(preview_path(service, job))
                links = gr.update(value=_links(job.id), visible=True)
            except FacetalkError:
                video = None
        return gr.Timer(active=False), progress_html(service, job), video, links, ""

    # -- Batch ---------------------------------------------------------------------------------

    def submit_batch(audio_file, identities, faces, batch_name, transcript, renderer, size, color_match, enhance, label):
        folder: list = [None]
        batch = (batch_name or "").strip() or time.strftime("batch-%Y%m%d-%H%M%S")
        try:
            if not identities and not faces:
                raise FacetalkError("choose identities or upload photos/videos: one job each, all with the same audio")
            audio = speech_input(audio_file, folder)
            if audio is None:
                raise FacetalkError("give the speech: upload an audio file (wav, mp3, m4a, flac, ogg)")
            opts = options_from(None, "clip", transcript, renderer, size, None, False, color_match, 18, 0)
            opts.update(finishing_from(enhance, 1.0, label, None))
            inputs = [face_input(f, folder) for f in faces or []]
            jobs = [service.submit({**opts, "identity": ref}, None, audio, batch=batch) for ref in identities or []]
            jobs += [service.submit(opts, face, audio, batch=batch) for face in inputs]
        except FacetalkError as e:
            uploads.discard(folder[0])
            return error_html(str(e)), None, gr.Timer(active=False), batch_table(None)
        return (ok_html(f"queued {len(jobs)} jobs in batch {jobs[0].batch}"), jobs[0].batch, gr.Timer(active=True),
                batch_table(jobs[0].batch))

    def submit_manifest(manifest_file, batch_name):
        try:
            if not manifest_file:
                raise FacetalkError("upload a manifest (.jsonl, .json or .csv)")
            batch_id = submit_manifest_file(service, Path(manifest_file), (batch_name or "").strip() or None)
        except FacetalkError as e:
            return error_html(str(e)), None, gr.Timer(active=False), batch_table(None)
        table = batch_table(batch_id)
        failed = int((table["state"] == "failed").sum())
        message = f"queued batch {batch_id}: {len(table)} rows" + (f", {failed} refused (see their error)" if failed else "")
        return ok_html(message), batch_id, gr.Timer(active=True), table

    def batch_table(batch):
        rows = []
        if batch:
            for j in reversed(service.jobs(batch=batch, limit=None)):
                rows.append([j.id, j.name, str(j.state), f"{overall(j) * 100:.0f}%", service.shown(j.error) or ""])
        return pd.DataFrame(rows, columns=["job", "name", "state", "progress", "error"])

    def follow_batch(batch):
        table = batch_table(batch)
        done = batch is None or all(s in {str(x) for x in FINAL_STATES} for s in table["state"])
        return table, (gr.Timer(active=False) if done else gr.update())

    # -- Jobs ----------------------------------------------------------------------------------

    def jobs_table():
        rows = [[j.id, j.name, str(j.state), f"{overall(j) * 100:.0f}%", j.batch or "", _when(j.created),
                 service.shown(j.error) or ""] for j in service.jobs(limit=200)]
        return pd.DataFrame(rows, columns=["job", "name", "state", "progress", "batch", "submitted", "error"])

    def refresh_jobs(known_ids, known_done):
        table = jobs_table()
        ids = list(table["job"])
        done = [i for i, s in zip(table["job"], table["state"]) if s == "succeeded"]
        pick = gr.update(choices=ids) if ids != known_ids else gr.update()
        zip_pick = gr.update(choices=done) if done != known_done else gr.update()
        return table, pick, zip_pick, ids, done

    def select_row(evt: gr.SelectData):
        row = evt.row_value or []
        return row[0] if row else gr.update()

    def show_job(job_id):
        if not job_id:
            return "", None, ""
        try:
            job = service.job(job_id)
        except FacetalkError as e:
            return error_html(str(e)), None, ""
        video, links = None, ""
        if job.state == JobState.SUCCEEDED:
            try:
                video = str(preview_path(service, job))
                links = _links(job.id)
            except FacetalkError as e:
                links = error_html(str(e))
        return progress_html(service, job) + links + _details(service, job), video, service.log(job.id)

    def follow_job(job_id):
        """While the picked job runs: its progress and log (the video once it is done)."""
        if job_id:
            try:
                job = service.job(job_id)
            except FacetalkError:
                job = None
            if job is not None and (job.state not in FINAL_STATES or job.finished is None
                                    or time.time() - job.finished < 2 * TABLE_TICK_S):
                return show_job(job_id)
        return gr.update(), gr.update(), gr.update()

    def act(job_id, action):
        try:
            if not job_id:
                raise FacetalkError("pick a job first")
            if action == "cancel":
                job = service.cancel(job_id)
                message = f"job {job.id} cancelled"
            elif action == "retry":
                job = service.retry(job_id)
                message = f"job {job.id} queued again"
            else:
                service.delete(job_id, remove_outputs=action == "delete-all")
                message = f"job {job_id} deleted" + (" with its video and sidecar" if action == "delete-all" else "")
        except FacetalkError as e:
            return error_html(str(e)), jobs_table()
        return ok_html(message), jobs_table()

    def zip_link(job_ids):
        if not job_ids:
            return ""
        query = html.escape("&".join(f"job={quote(str(i), safe='')}" for i in job_ids))
        n = len(job_ids)
        return (f'<p class="ft-links"><a id="zip-link" href="/v1/outputs/zip?{query}" download>'
                f"Download a zip of {n} job{'s' if n != 1 else ''} (videos and sidecars)</a></p>")

    # -- Identities ----------------------------------------------------------------------------

    def identities_table():
        rows = []
        for ident in service.identities():
            for v in ident["versions"]:
                frames = _frames(v)
                rows.append([v["ref"], "yes" if v["latest"] else "", v.get("created") or "", frames,
                             _consent_text(v.get("consent")), v.get("error") or ""])
        return pd.DataFrame(rows, columns=["version", "latest", "created", "frames used", "consent", "problem"])

    def refresh_identities(known):
        refs = identity_choices()
        versions = [r for r in refs if "@" in r]
        if refs == known:
            return gr.update(), gr.update(), gr.update(), gr.update(), known
        return (identities_table(), gr.update(choices=[("", ""), *[(r, r) for r in refs]]),
                gr.update(choices=refs), gr.update(choices=versions), refs)

    def show_identity(ref):
        if not ref:
            return None, ""
        try:
            return service.thumbnail(ref, 320), _identity_text(service.identity(ref))
        except FacetalkError as e:
            return None, error_html(str(e))

    def identity_action(ref, action):
        try:
            if not ref:
                raise FacetalkError("pick a version first")
            if action == "promote":
                service.promote(ref)
                message = f"{ref} is now the latest"
            else:
                service.remove_identity(ref)
                message = f"removed {ref}"
        except FacetalkError as e:
            return error_html(str(e)), identities_table()
        return ok_html(message), identities_table()

    def learn(name, consent, footage_files, transcript, promote):
        folder = None
        try:
            if not footage_files:
                raise FacetalkError("upload at least one video of the person talking (mp4, mov, mkv or webm)")
            folder = uploads.new_folder(config.home)
            footage = [uploads.ingest(Path(f), _file_name(f), "footage", "footage", folder, config.max_upload_bytes)
                       for f in footage_files]
            transcripts = [transcript.strip()] * len(footage) if transcript and transcript.strip() and len(footage) == 1 else None
            if transcript and transcript.strip() and len(footage) > 1:
                raise FacetalkError("a transcript fits one footage file: upload one video, or leave the transcript empty")
            task = service.start_identity((name or "").strip(), footage, folder, consent, transcripts, promote=bool(promote))
        except FacetalkError as e:
            uploads.discard(folder)
            return error_html(str(e)), tasks_table(), gr.Timer(active=False)
        return ok_html(f"learning {task['name']} (task {task['id']}): it takes about as long as the footage"), \
            tasks_table(), gr.Timer(active=True)

    def tasks_table():
        rows = []
        for t in service.tasks.list(20):
            detail = (t.get("error") if t["state"] == "failed" else f"made {t.get('ref')}" if t["state"] == "succeeded"
                      else t.get("message")) or ""
            rows.append([t["id"], t["name"], t["state"], f"{t.get('progress', 0) * 100:.0f}%", detail])
        return pd.DataFrame(rows, columns=["task", "name", "state", "progress", "detail"])

    def follow_tasks():
        table = tasks_table()
        running = any(s in ("queued", "running") for s in table["state"])
        return table, (gr.update() if running else gr.Timer(active=False))

    # -- layout --------------------------------------------------------------------------------

    with gr.Blocks(title="facetalk studio", analytics_enabled=False, delete_cache=(3600, 24 * 3600)) as demo:
        gr.Markdown("# facetalk studio\nA photo or video of a person, plus speech, gives a lip-synced video. "
                    "Everything runs on this computer; jobs keep running if you close the page.")
        known_ids = gr.State([])
        known_done = gr.State([])
        known_refs = gr.State(None)

        with gr.Tabs():
            with gr.Tab("Create", id="create"):
                with gr.Row():
                    with gr.Column():
                        face_file = gr.File(label="Photo (jpg, png, webp) or video (mp4, mov, mkv, webm) of the person",
                                            elem_id="face-file")
                        identity = gr.Dropdown(choices=[("", "")], value="", label="…or a learnt identity",
                                               info="NAME is its latest version", elem_id="identity-pick")
                        identity_face = gr.Radio(["clip", "photo"], value="clip", label="Identity's face",
                                                 info="without a photo or video: a clip of its footage, or its photo")
                        audio_file = gr.File(label="Speech: wav, mp3, m4a, flac, ogg (or a video with sound)",
                                             elem_id="audio-file")
                        text = gr.Textbox(label="…or text to speak", interactive=tts, lines=2, elem_id="tts-text",
                                          placeholder="the words, spoken by a local voice" if tts else TTS_NOTE,
                                          info=None if tts else f"{TTS_NOTE}; upload a recording for now")
                        voices = tts_voices() if tts else []
                        voice = gr.Dropdown(voices, value="en-us" if "en-us" in voices else None, label="Voice",
                                            visible=tts, elem_id="tts-voice")
                        transcript = gr.Textbox(label="Words spoken (optional)", lines=2,
                                                info="the exact words of the audio: precise lip-sync by forced alignment")
                        with gr.Accordion("Options", open=False):
                            renderer = gr.Dropdown(renderers, value="auto", label="Renderer",
                                                   info="auto: retrieval with an identity, else warp")
                            size = gr.Textbox(label="Size", placeholder="the input's, at most 1920 (e.g. 1280x720 or 720)")
                            fps = gr.Number(label="Frames per second", value=None, minimum=0, maximum=120,
                                            info="empty: 25 for a photo, the video's own rate")
                            still = gr.Checkbox(label="Still photo: no blinks, head sway or breathing")
                            color_match = gr.Radio(["none", "mean", "histogram"], value="mean", label="Colour match",
                                                   info="match the new mouth's colour to the face around it")
                            crf = gr.Slider(0, 51, value=18, step=1, label="Video quality (CRF: lower is better, larger)")
                            seed = gr.Number(label="Seed (idle motion)", value=0, precision=0, minimum=0)
                        with gr.Accordion("Finishing", open=False):
                            enhance = gr.Checkbox(label="Enhance: sharpen the mouth (teeth, lips) and, gently, the face",
                                                  elem_id="enhance")
                            enhancer_file = gr.File(label="Face restoration: an .onnx model (optional)",
                                                    elem_id="enhancer-file")
                            lut_file = gr.File(label="Colour grade: a .cube LUT (optional)", elem_id="lut-file")
                            lut_strength = gr.Slider(0, 1, value=1.0, step=0.05, label="Grade strength",
                                                     elem_id="lut-strength")
                            label = gr.Checkbox(value=True, label="Visible label (the file says it is AI-generated "
                                                                  "either way)", elem_id="label-on")
                            label_text = gr.Textbox(value=DEFAULT_LABEL_TEXT, label="Label text", max_length=80,
                                                    elem_id="label-text")
                        render_button = gr.Button("Render", variant="primary", elem_id="render-button")
                        create_status = gr.HTML(elem_id="create-status")
                    with gr.Column():
                        create_progress = gr.HTML(elem_id="create-progress")
                        result = gr.Video(label="Result", elem_id="result-video", interactive=False)
                        result_links = gr.HTML(visible=False, elem_id="result-links")
                current_job = gr.State(None)
                create_timer = gr.Timer(TICK_S, active=False)

            with gr.Tab("Batch", id="batch"):
                gr.Markdown("One audio for several identities or photos: one job each, in one batch.")
                with gr.Row():
                    with gr.Column():
                        batch_audio = gr.File(label="Speech for every job (wav, mp3, m4a, flac, ogg)", elem_id="batch-audio")
                        batch_identities = gr.Dropdown(choices=[], multiselect=True, label="Identities",
                                                       info="learn people in the Identities tab")
                        batch_faces = gr.File(label="Photos or videos", file_count="multiple", elem_id="batch-faces")
                        batch_transcript = gr.Textbox(label="Words spoken (optional)", lines=2)
                        with gr.Row():
                            batch_renderer = gr.Dropdown(renderers, value="auto", label="Renderer")
                            batch_size = gr.Textbox(label="Size", placeholder="the input's")
                        with gr.Row():
                            batch_color = gr.Radio(["none", "mean", "histogram"], value="mean", label="Colour match")
                            batch_enhance = gr.Checkbox(label="Enhance mouth and face detail")
                            batch_label = gr.Checkbox(value=True, label="Visible AI-generated label")
                        batch_name = gr.Textbox(label="Batch name", placeholder="batch-<date>-<time>")
                        batch_button = gr.Button("Render all", variant="primary", elem_id="batch-button")
                        with gr.Accordion("…or a manifest", open=False):
                            gr.Markdown("One render per row, as `facetalk batch` reads it: JSON lines, a JSON list or "
                                        "a CSV with a header; keys `identity` or `face`, `audio`, `name`, "
                                        "`transcript_text` and any render option (`size`, `fps`, `renderer`, ...). "
                                        "Files are absolute paths on this server. A bad row fails alone, with its reason.")
                            manifest_file = gr.File(label="Manifest (.jsonl, .json or .csv)", elem_id="manifest-file")
                            manifest_button = gr.Button("Queue the manifest", elem_id="manifest-button")
                        batch_status = gr.HTML(elem_id="batch-status")
                    with gr.Column():
                        batch_rows = gr.Dataframe(value=batch_table(None), label="This batch", interactive=False,
                                                  elem_id="batch-table", wrap=True,
                                                  column_widths=["24%", "16%", "15%", "11%", "34%"])
                current_batch = gr.State(None)
                batch_timer = gr.Timer(1.0, active=False)

            with gr.Tab("Identities", id="identities"):
                with gr.Row():
                    with gr.Column(scale=3):
                        ident_table = gr.Dataframe(value=None, label="Identities (every version)", interactive=False,
                                                   elem_id="identities-table", wrap=True,
                                                   column_widths=["15%", "11%", "22%", "13%", "24%", "15%"])
                        ident_pick = gr.Dropdown(choices=[], label="Version", elem_id="identity-version")
                        with gr.Row():
                            promote_button = gr.Button("Make it the latest")
                            remove_button = gr.Button("Remove this version", variant="stop")
                        ident_status = gr.HTML(elem_id="identity-status")
                    with gr.Column(scale=2):
                        ident_thumb = gr.Image(label="Reference photo", interactive=False, type="pil", height=320,
                                               elem_id="identity-thumb")
                        ident_info = gr.HTML(elem_id="identity-info")
                gr.Markdown("### Learn a person from footage")
                with gr.Row():
                    with gr.Column():
                        learn_name = gr.Textbox(label="Name", elem_id="learn-name", placeholder="lower-case letters, digits, . _ - (e.g. ana)")
                        learn_consent = gr.Textbox(label="Consent (required)", elem_id="learn-consent",
                                                   placeholder="who agreed to this identity, and for what")
                        learn_files = gr.File(label="Footage: 1-5 minutes of the person talking to camera "
                                                    "(mp4, mov, mkv, webm)", file_count="multiple", elem_id="learn-files")
                        learn_transcript = gr.Textbox(label="Words spoken (optional, one video)", lines=2)
                        learn_promote = gr.Checkbox(label="Make the new version the latest")
                        learn_button = gr.Button("Learn", variant="primary", elem_id="learn-button")
                        learn_status = gr.HTML(elem_id="learn-status")
                    with gr.Column():
                        task_rows = gr.Dataframe(value=None, label="Identity tasks", interactive=False, elem_id="tasks-table",
                                                 wrap=True, column_widths=["24%", "12%", "13%", "11%", "40%"])
                task_timer = gr.Timer(1.0, active=False)

            with gr.Tab("Jobs", id="jobs"):
                jobs_rows = gr.Dataframe(value=None, label="Jobs (newest first; pick a row)", interactive=False,
                                         elem_id="jobs-table", max_height=400, wrap=True,
                                         column_widths=["18%", "12%", "12%", "9%", "11%", "14%", "24%"])
                with gr.Row():
                    with gr.Column():
                        job_pick = gr.Dropdown(choices=[], label="Job", elem_id="job-pick")
                        with gr.Row():
                            cancel_button = gr.Button("Cancel", size="md")
                            retry_button = gr.Button("Retry", size="md")
                            delete_button = gr.Button("Delete", variant="stop", size="md")
                            delete_all_button = gr.Button("Delete + files", variant="stop", size="md")
                        job_status = gr.HTML(elem_id="job-status")
                        job_details = gr.HTML(elem_id="job-details")
                        job_log = gr.Textbox(label="Log", lines=10, max_lines=30, interactive=False, elem_id="job-log")
                    with gr.Column():
                        job_video = gr.Video(label="Preview", interactive=False, elem_id="job-video")
                gr.Markdown("### Download")
                zip_pick = gr.Dropdown(choices=[], multiselect=True, label="Succeeded jobs to pack in one zip",
                                       elem_id="zip-pick")
                zip_html = gr.HTML(elem_id="zip-download")
                jobs_timer = gr.Timer(TABLE_TICK_S)

            with gr.Tab("Live", id="live"):  # the live page (facetalk.web.live_page), microphone allowed in it
                gr.HTML('<iframe id="live-frame" src="/live/" title="facetalk live" allow="microphone; autoplay" '
                        'style="width:100%;height:820px;border:0"></iframe>', elem_id="live-tab")

        # -- events ------------------------------------------------------------------------------
        quiet = {"show_progress": "hidden", "concurrency_limit": None}
        render_button.click(submit, [face_file, identity, identity_face, audio_file, text, voice, transcript, renderer,
                                     size, fps, still, color_match, crf, seed, enhance, enhancer_file, lut_file,
                                     lut_strength, label, label_text],
                            [create_status, current_job, create_timer, create_progress, result, result_links],
                            concurrency_limit=2)
        create_timer.tick(follow, current_job, [create_timer, create_progress, result, result_links, create_status],
                          **quiet)

        batch_button.click(submit_batch, [batch_audio, batch_identities, batch_faces, batch_name, batch_transcript,
                                          batch_renderer, batch_size, batch_color, batch_enhance, batch_label],
                           [batch_status, current_batch, batch_timer, batch_rows], concurrency_limit=2)
        manifest_button.click(submit_manifest, [manifest_file, batch_name],
                              [batch_status, current_batch, batch_timer, batch_rows], concurrency_limit=2)
        batch_timer.tick(follow_batch, current_batch, [batch_rows, batch_timer], **quiet)

        ident_outputs = [ident_table, identity, batch_identities, ident_pick, known_refs]
        ident_pick.change(show_identity, ident_pick, [ident_thumb, ident_info], show_progress="hidden")
        promote_button.click(identity_action, [ident_pick, gr.State("promote")], [ident_status, ident_table])
        remove_button.click(identity_action, [ident_pick, gr.State("remove")], [ident_status, ident_table]).then(
            refresh_identities, gr.State(None), ident_outputs, show_progress="hidden")
        learn_button.click(learn, [learn_name, learn_consent, learn_files, learn_transcript, learn_promote],
                           [learn_status, task_rows, task_timer], concurrency_limit=2)
        task_timer.tick(follow_tasks, None, [task_rows, task_timer], **quiet).then(
            refresh_identities, known_refs, ident_outputs, **quiet)

        jobs_outputs = [jobs_rows, job_pick, zip_pick, known_ids, known_done]
        jobs_timer.tick(refresh_jobs, [known_ids, known_done], jobs_outputs, **quiet).then(
            follow_job, job_pick, [job_details, job_video, job_log], **quiet)
        jobs_rows.select(select_row, None, job_pick, show_progress="hidden")
        job_pick.change(show_job, job_pick, [job_details, job_video, job_log], show_progress="hidden")
        for button, action in ((cancel_button, "cancel"), (retry_button, "retry"), (delete_button, "delete"),
                               (delete_all_button, "delete-all")):
            button.click(act, [job_pick, gr.State(action)], [job_status, jobs_rows])
        zip_pick.change(zip_link, zip_pick, zip_html, show_progress="hidden")

        def on_load():
            refs = identity_choices()
            table = jobs_table()
            ids = list(table["job"])
            done = [i for i, s in zip(table["job"], table["state"]) if s == "succeeded"]
            note = "" if refs else ok_html("No identities yet: learn one from footage below, or with "
                                           "'facetalk identity create'.")
            return (gr.update(choices=[("", ""), *[(r, r) for r in refs]]), gr.update(choices=refs),
                    identities_table(), gr.update(choices=[r for r in refs if "@" in r]), refs, tasks_table(),
                    table, gr.update(choices=ids), gr.update(choices=done), ids, done, note)

        demo.load(on_load, None, [identity, batch_identities, ident_table, ident_pick, known_refs, task_rows,
                                  jobs_rows, job_pick, zip_pick, known_ids, known_done, ident_info],
                  show_progress="hidden")
    demo.queue(default_concurrency_limit=4)
    return demo


MANIFEST_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv")
# Keys a manifest uploaded to the server may not use: they name files on the server to
# write (output) or to read as text into the job (transcript: give transcript_text).
MANIFEST_REFUSED = {"output": "outputs go to the server's outputs folder: leave 'output' out",
                    "transcript": "give the words as 'transcript_text' (a file path is not read from an upload)"}


def submit_manifest_file(service: Service, path: Path, batch_name: str | None) -> str:
    """Queue the rows of an uploaded manifest as one batch (facetalk.jobs.batch reads and
    checks them; a bad row becomes a failed job with its reason); the batch's id."""
    from ..jobs.batch import Batch
    from ..jobs.store import safe_name

    suffix = Path(path.name).suffix.lower()
    if suffix not in MANIFEST_SUFFIXES:
        raise FacetalkError(f"unsupported manifest '{suffix or '(none)'}': use .jsonl, .json or .csv")
    folder = uploads.new_folder(service.home)
    try:
        copy = folder / f"manifest{suffix}"
        if path.stat().st_size > 8 * 1024 * 1024:
            raise FacetalkError("the manifest is larger than 8 MB: split it")
        copy.write_bytes(path.read_bytes())
        batch = Batch.from_manifest(copy)
        if batch_name:
            batch.id = safe_name(batch_name)
        for row in batch.rows:
            keys = {str(k).strip().lower().replace("-", "_") for k in (row.raw or {})}
            for key, why in MANIFEST_REFUSED.items():
                if key in keys and row.error is None:
                    row.error = why
        batch.submit(service.store, service.home)
    finally:
        uploads.discard(folder)  # the rows' requests are stored (paths absolute): the copy is not needed
    return batch.id


def preview_path(service: Service, job) -> Path:
    """The job's video where the studio may serve it from: under outputs/ as it is; an
    output written elsewhere (`facetalk render -o`) linked or copied into web/preview/."""
    import os
    import shutil

    from ..jobs.outputs import outputs_dir

    video = service.output(job.id, "video")
    root = outputs_dir(service.home).absolute()
    if video.absolute().is_relative_to(root):
        return video
    target = preview_dir(service.home) / f"{job.id}.mp4"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(video, target)
        except OSError:
            shutil.copyfile(video, target)
    return target


def _links(job_id: str) -> str:
    j = html.escape(job_id)
    return (f'<p class="ft-links"><a href="/v1/jobs/{j}/output" download>Download the video</a>'
            f'<a href="/v1/jobs/{j}/output?file=sidecar" download>Download the sidecar (JSON)</a>'
            f'<a href="/v1/outputs/zip?job={j}" download>Download both as a zip</a></p>')


def _details(service: Service, job) -> str:
    m = job.metrics or {}
    rows = [("submitted", _when(job.created)), ("finished", _when(job.finished)),
            ("attempts", f"{job.attempts}/{job.max_attempts}")]
    if "width" in m:
        rows.append(("result", (f"{m.get('width')}x{m.get('height')}, {m.get('duration', 0):.2f} s, {m.get('n_frames')} "
                                f"frames at {m.get('fps', 0):g} fps, lip-sync from {m.get('speech_method')}, "
                                f"rendered in {m.get('seconds', 0):.1f} s")))
    req = job.request
    source = Path(service.shown(req.get("face")) or "").name or req.get("identity") or ""
    rows.append(("input", f"{source} + {Path(service.shown(req.get('audio')) or '').name}"))
    for w in m.get("warnings", []):
        rows.append(("warning", service.shown(w) or ""))
    body = "".join(f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(k)}</th>"
                   f"<td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f"<table class='ft-details'>{body}</table>"


def _frames(v: dict) -> str:
    used, total = v.get("frames_used"), v.get("frames_total")
    if used is None:
        return ""
    return f"{used} of {total}" if total else str(used)


def _size(n) -> str:
    if not isinstance(n, (int, float)):
        return "?"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


def _consent_text(consent) -> str:
    if consent is None or consent == "":
        return "none recorded"
    text = consent if isinstance(consent, str) else str(consent)
    return text if len(text) <= 60 else text[:57] + "..."


def _identity_text(v: dict) -> str:
    if v.get("error"):
        return error_html(v["error"])
    skipped = v.get("frames_skipped") or {}
    why = ", ".join(f"{k.replace('_', ' ')} {n}" for k, n in skipped.items() if n) if isinstance(skipped, dict) else ""
    rows = [("version", v["ref"] + (" (latest)" if v.get("latest") else "")), ("created", v.get("created") or "?"),
            ("consent", _consent_text(v.get("consent"))),
            ("frames", (_frames(v) or "?") + " used" + (f"; skipped: {why}" if why else "")),
            ("mouth images", str(v.get("bank") or "?")), ("footage", ", ".join(v.get("footage") or []) or "?"),
            ("size", _size(v.get("size_bytes")))]
    body = "".join(f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(k)}</th>"
                   f"<td>{html.escape(str(val))}</td></tr>" for k, val in rows)
    return f"<table>{body}</table>"


__all__ = ["CSS", "build_studio", "overall", "preview_dir", "progress_html"]
