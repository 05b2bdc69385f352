"""Machine-readable provenance of an output: MP4 container tags saying the video is
AI-generated, by what and for which job.

facetalk.media.encode.VideoWriter writes them with movflags=+use_metadata_tags, so the
custom keys survive the MP4 muxer; PyAV reads them all back:

    av.open("out.mp4").metadata["ai_generated"]      # "true"
"""

from __future__ import annotations

from .. import __version__

# The tags every output carries (values are text; "none" where there is nothing to say).
KEYS = ("comment", "description", "ai_generated", "generator", "renderer", "identity", "job_id", "label", "finish",
        "encoder_tool")


def provenance_metadata(*, renderer: str, identity: str | None = None, job_id: str | None = None,
                        label: str = "none", finish: str = "none", tool: str = "facetalk",
                        version: str = __version__) -> dict[str, str]:
    """The container tags of an AI-generated video.

    renderer: what made the pictures ("warp", "retrieval", "neural", a face swap...);
    identity: the identity version used ("ana@v2"), None without one; job_id: the job that
    made it; label: the visible label as FinishOptions.label_description() gives it
    ("AI-generated (bottom-right)", or "none" when the video has none); finish: the other
    finishing steps (FinishOptions.describe()). comment and description hold the same
    facts as one sentence for players that show only those."""
    generator = f"{tool} {version}"
    facts = [f"renderer {renderer}", f"identity {identity or 'none'}", f"job {job_id or 'none'}",
             f"visible label {label}"]
    if finish != "none":
        facts.append(f"finishing {finish}")
    sentence = f"AI-generated video made with {generator} ({'; '.join(facts)})"
    return {
        "comment": sentence,
        "description": sentence,
        "ai_generated": "true",
        "generator": generator,
        "renderer": renderer,
        "identity": identity or "none",
        "job_id": job_id or "none",
        "label": label,
        "finish": finish,
        "encoder_tool": generator,
    }


__all__ = ["KEYS", "provenance_metadata"]
