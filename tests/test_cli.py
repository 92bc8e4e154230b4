"""The command line as a user runs it: a subprocess, its output and exit code."""

import json

from conftest import tone


def test_help_lists_subcommands(cli):
    result = cli("--help", check=True)
    for command in ("ingest", "make-demo-data", "demo"):
        assert command in result.stdout


def test_console_script_is_installed():
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    script = Path(sys.executable).parent / "jukebox-tf"
    assert script.exists() or shutil.which("jukebox-tf")
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True)
    assert result.stdout.strip() == "jukebox-tf 0.1.0"


def test_ingest_prints_summary_and_rejections(tmp_path, write_audio, cli):
    write_audio("a.wav", tone(3.0, 22050), 22050)
    (tmp_path / "in" / "bad.wav").write_text("nope")
    result = cli("ingest", tmp_path / "in", tmp_path / "out", "--sample-rate", "22050",
                 "--chunk-seconds", "2", check=True)
    assert "ingested 1 file(s), 3.0 s of audio at 22050 Hz into 2 chunks in 1 shard(s)" \
        in result.stdout
    assert "rejected: 1\n  bad.wav: not an audio file" in result.stdout
    assert "ingest:" in result.stderr  # the progress bar
    manifest = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert manifest["counts"]["files_ok"] == 1


def test_ingest_keeps_a_truncated_file_flagged_and_strict_rejects_it(tmp_path, write_audio,
                                                                      cli):
    path = write_audio("cut.wav", tone(4.0, 22050), 22050)
    path.write_bytes(path.read_bytes()[:44 + 2 * 22050 * 3])  # 3 s of the 4 the header says
    result = cli("ingest", tmp_path / "in", tmp_path / "out", "--sample-rate", "22050",
                 "--quiet", check=True)
    assert ("flagged (kept): 1\n  cut.wav: truncated: the data chunk declares 4.00 s, the file "
            "holds 3.00 s; kept 3.00 s of 4.00 s") in result.stdout
    result = cli("ingest", tmp_path / "in", tmp_path / "strict", "--sample-rate", "22050",
                 "--quiet", "--strict")
    assert result.returncode == 1  # nothing ingested
    assert ("rejected: 1\n  cut.wav: truncated: the data chunk declares 4.00 s, the file holds "
            "3.00 s; rejected (strict)") in result.stdout


def test_ingest_usage_errors(tmp_path, cli):
    result = cli("ingest", tmp_path / "missing", tmp_path / "out")
    assert result.returncode == 2
    assert "jukebox-tf ingest: error: input folder" in result.stderr
    assert "Traceback" not in result.stderr
    (tmp_path / "empty").mkdir()
    result = cli("ingest", tmp_path / "empty", tmp_path / "out", "--quiet")
    assert result.returncode == 1 and "ingested 0 file(s)" in result.stdout
    result = cli("ingest", tmp_path / "empty", tmp_path / "out", "--channels", "3")
    assert result.returncode == 2 and "invalid choice" in result.stderr


def test_pipeline_compile_writes_a_kubeflow_spec_for_the_image(tmp_path, cli):
    out = tmp_path / "pipeline.json"
    result = cli("pipeline", "compile", "--kubeflow", "--image", "reg/jukebox-tf:7", "-o", out,
                 "--root", "gs://b/root", "--vqvae-steps", "5", check=True)
    assert f"wrote {out} (image reg/jukebox-tf:7)" in result.stdout
    spec = json.loads(out.read_text())["pipelineSpec"]
    assert "VQVAETrainer" in spec["root"]["dag"]["tasks"]
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()
              if "container" in e}
    assert images == {"reg/jukebox-tf:7"}
    params = spec["root"]["dag"]["tasks"]["VQVAETrainer"]["inputs"]["parameters"]
    train_args = params["train_args"]["runtimeValue"]["constantValue"]["stringValue"]
    assert json.loads(train_args) == {"num_steps": 5}
    pusher = json.dumps(spec["root"]["dag"]["tasks"]["Pusher"])
    assert "gs://b/root/serving/jukebox" in pusher  # the default serving dir, under the root
    assert "gs://b/root/data" in json.dumps(spec["root"]["dag"]["tasks"]["AudioExampleGen"])


def test_pipeline_compile_strict_makes_the_example_gen_reject_truncated_files(tmp_path, cli):
    out = tmp_path / "pipeline.json"
    for flags, strict in (((), False), (("--strict",), True)):
        cli("pipeline", "compile", "--kubeflow", "--image", "reg/jukebox-tf:7", "-o", out,
            "--root", "gs://b/root", *flags, check=True)
        spec = json.loads(out.read_text())["pipelineSpec"]
        params = spec["root"]["dag"]["tasks"]["AudioExampleGen"]["inputs"]["parameters"]
        config = params["ingest_config"]["runtimeValue"]["constantValue"]["stringValue"]
        assert json.loads(config)["strict"] is strict


def test_pipeline_run_names_a_missing_data_folder(tmp_path, cli):
    result = cli("pipeline", "run", "--data", tmp_path / "nope", "--root", tmp_path / "root")
    assert result.returncode == 2 and f"--data '{tmp_path / 'nope'}': not a folder" in result.stderr
