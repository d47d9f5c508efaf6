"""Transcript readers: every supported format, and one bad transcript never sinks the rest."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from tokenwindow.transcripts import BadTranscript, Transcript, read_stream, read_transcripts

LOCOMO = {
    "speaker_a": "Caroline",
    "speaker_b": "Melanie",
    "session_2_date_time": "1:14 pm on 25 May, 2023",
    "session_2": [{"speaker": "Melanie", "dia_id": "D2:1", "text": "I ran a race."}],
    "session_1_date_time": "1:56 pm on 8 May, 2023",
    "session_1": [
        {"speaker": "Caroline", "dia_id": "D1:1", "text": "Hey Mel!"},
        {
            "speaker": "Melanie",
            "dia_id": "D1:2",
            "text": "Look at this.",
            "blip_caption": "a photo of a sunset",
        },
    ],
    "session_1_summary": "never read: summaries are not part of the conversation",
    "qa": [{"question": "?", "answer": "x", "category": 1}],
}


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_jsonl_streams_and_reports_the_bad_line(tmp_path: Path) -> None:
    good = {"id": "a", "messages": [{"role": "user", "content": "hi"}]}
    bad_role = {"id": "c", "messages": [{"role": "robot", "content": "hi"}]}
    lines = [json.dumps(good), "{not json", json.dumps(bad_role), json.dumps({**good, "id": "d"})]
    items = list(read_transcripts(_write(tmp_path / "t.jsonl", "\n".join(lines))))
    assert [type(i) for i in items] == [Transcript, BadTranscript, BadTranscript, Transcript]
    assert items[1].id.endswith("t.jsonl:2") and "invalid JSON" in items[1].reason
    assert items[2].id == "c" and "messages[0].role" in items[2].reason
    assert items[3] == Transcript("d", good["messages"])  # type: ignore[arg-type]


def test_jsonl_is_read_line_by_line() -> None:
    class OneWay(io.StringIO):
        def read(self, size: int | None = -1) -> str:
            raise AssertionError("JSONL must not be read whole")

    line = json.dumps({"id": "a", "messages": [{"role": "user", "content": "hi"}]})
    items = list(read_stream(OneWay(f"\n{line}\n{line}\n"), "s"))
    assert [i.id for i in items] == ["a", "a"]


def test_sharegpt_list_and_single(tmp_path: Path) -> None:
    one = {
        "id": "s1",
        "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}],
    }
    two = {"conversations": [{"from": "alien", "value": "?"}]}
    items = list(read_transcripts(_write(tmp_path / "x.json", json.dumps([one, two]))))
    assert items[0] == Transcript(
        "s1", [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    )
    assert isinstance(items[1], BadTranscript) and "from" in items[1].reason
    assert items[1].id.endswith("x.json[1]")
    (single,) = read_transcripts(_write(tmp_path / "y.json", json.dumps(one)))
    assert isinstance(single, Transcript) and single.id == "s1"


def test_sharegpt_as_jsonl_is_read_line_by_line_beside_message_lines() -> None:
    class OneWay(io.StringIO):
        def read(self, size: int | None = -1) -> str:
            raise AssertionError("JSONL must not be read whole")

    share = {"id": "g", "conversations": [{"from": "human", "value": "hi"}]}
    plain = {"id": "m", "messages": [{"role": "user", "content": "yo"}]}
    lines = "\n".join(json.dumps(v) for v in (share, plain, share | {"id": "g2"}))
    items = list(read_stream(OneWay(lines + "\n"), "s"))
    assert [i.id for i in items] == ["g", "m", "g2"]
    assert items[0] == Transcript("g", [{"role": "user", "content": "hi"}])


def test_locomo_speakers_dates_and_images(tmp_path: Path) -> None:
    (item,) = read_transcripts(_write(tmp_path / "26.json", json.dumps(LOCOMO)))
    assert isinstance(item, Transcript) and item.id == "26"
    assert item.messages == [
        {"role": "user", "content": "Caroline: [1:56 pm on 8 May, 2023] Hey Mel!"},
        {
            "role": "assistant",
            "content": "Melanie: Look at this. [shares an image: a photo of a sunset]",
        },
        {"role": "assistant", "content": "Melanie: [1:14 pm on 25 May, 2023] I ran a race."},
    ]


def test_locomo_release_file_with_samples(tmp_path: Path) -> None:
    samples = [{"sample_id": "conv-26", "conversation": LOCOMO, "qa": []}]
    (item,) = read_transcripts(_write(tmp_path / "locomo10.json", json.dumps(samples)))
    assert isinstance(item, Transcript) and item.id == "conv-26"


def test_a_folder_reads_every_transcript_file_and_skips_the_rest(tmp_path: Path) -> None:
    _write(tmp_path / "26.json", json.dumps(LOCOMO))
    _write(tmp_path / "README.md", "# not a transcript")
    _write(tmp_path / "broken.json", "{")
    items = list(read_transcripts(tmp_path))
    assert [type(i) for i in items] == [Transcript, BadTranscript]
    assert items[1].id.endswith("broken.json")


def test_the_format_comes_from_the_content_not_the_name(tmp_path: Path) -> None:
    line = json.dumps({"id": "a", "messages": [{"role": "user", "content": "hi"}]})
    items = list(read_transcripts(_write(tmp_path / "actually_jsonl.json", f"{line}\n{line}\n")))
    assert [i.id for i in items] == ["a", "a"]


def test_dash_reads_jsonl_from_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    line = json.dumps({"id": "in", "messages": [{"role": "user", "content": "hi"}]})
    monkeypatch.setattr("sys.stdin", io.StringIO(line + "\n"))
    assert [i.id for i in read_transcripts("-")] == ["in"]


def test_a_missing_file_is_an_error_item(tmp_path: Path) -> None:
    (item,) = read_transcripts(tmp_path / "nope.jsonl")
    assert isinstance(item, BadTranscript) and "cannot read" in item.reason
