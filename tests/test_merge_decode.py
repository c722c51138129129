"""hdmole.bin.merge_decode: the parts of a decoding split over N jobs become one output dir, or a clear error."""
import json
from pathlib import Path

import pytest

from hdmole.bin.merge_decode import main


def write_part(part: Path, hyps: dict[str, str], seconds: float, beam: int = 4,
               encoder_cache: str = "none") -> None:
    part.mkdir(parents=True)
    part.joinpath("text").write_text("".join(f"{u} {h}".rstrip() + "\n" for u, h in hyps.items()), encoding="utf-8")
    part.joinpath("rtf").write_text(
        f"rtf 0.1\ncpu_rtf 0.1\ndecode_seconds {seconds}\naudio_seconds 10.0\nwall_seconds_with_loading 3.0\n"
        f"utterances {len(hyps)}\nbeam {beam}\nnj 1\nthreads_per_job 1\nngram none\nngram_weight 0.0000\ndevice cpu\n"
        f"encoder_cache {encoder_cache}\n")
    part.joinpath("decode_inputs.json").write_text(json.dumps({"options": {"beam": beam}}))


@pytest.fixture
def split(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    data.joinpath("text").write_text("a-1 甲\na-2 乙\nb-1 丙\n", encoding="utf-8")
    out = tmp_path / "exp" / "decode_t"
    write_part(out / "split2" / "1", {"a-1": "甲", "a-2": ""}, 2.0, encoder_cache="filled")
    write_part(out / "split2" / "2", {"b-1": "丙丁"}, 3.0, encoder_cache="loaded")
    return data, out


def test_merge_writes_text_rtf_and_record(split):
    data, out = split
    assert main(["--data", str(data), "--out", str(out), str(out / "split2/1"), str(out / "split2/2")]) == 0
    assert (out / "text").read_text(encoding="utf-8") == "a-1 甲\na-2\nb-1 丙丁\n"  # an empty hypothesis: the id alone
    rtf = dict(line.split(" ", 1) for line in (out / "rtf").read_text().splitlines())
    # Side by side, the slowest part sets the wall time; cpu_rtf counts every part's.
    assert rtf["decode_seconds"] == "3.0000" and rtf["rtf"] == "0.1500" and rtf["cpu_rtf"] == "0.2500"
    assert rtf["audio_seconds"] == "20.0000" and rtf["utterances"] == "3" and rtf["nj"] == "2" and rtf["beam"] == "4"
    # one part encoded its utterances, the other loaded them (--encoder-cache-dir): speed, not a disagreement
    assert rtf["encoder_cache"] == "filled,loaded"
    record = json.loads((out / "decode_inputs.json").read_text())
    assert len(record["parts"]) == 2 and record["merged_from"][1].endswith("split2/2")


def test_merge_rejects_unfinished_missing_and_mismatched_parts(split, capsys):
    data, out = split
    parts = [str(out / "split2/1"), str(out / "split2/2")]
    (out / "split2/2/decode_inputs.json").unlink()
    with pytest.raises(SystemExit, match="split2/2 is not a finished decoding"):
        main(["--data", str(data), "--out", str(out), *parts])
    with pytest.raises(SystemExit, match=r"do not cover .*1 utterances missing \(first \['b-1'\]\)"):
        main(["--data", str(data), "--out", str(out), parts[0]])
    write_part(out / "other", {"b-1": "丙"}, 1.0, beam=1)
    with pytest.raises(SystemExit, match="the parts disagree on beam"):
        main(["--data", str(data), "--out", str(out), parts[0], str(out / "other")])
    assert not (out / "text").exists()
