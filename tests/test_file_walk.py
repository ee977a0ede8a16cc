"""Every file walk ends: link loops are entered once, whichever walk meets them."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SCAN = """
import sys
from training.data import scan_images
print("\\n".join(str(p) for p in scan_images(sys.argv[1], 8)))
"""


def _looped_tree(root: Path) -> list[Path]:
    """Images in nested folders with three links back up the tree and one across it."""
    (root / "a" / "b").mkdir(parents=True)
    (root / "c").mkdir()
    images = [root / "top.png", root / "a" / "one.jpg", root / "a" / "b" / "two.png", root / "c" / "three.png"]
    for path in images:
        Image.new("RGB", (16, 16), "red").save(path)
    os.symlink(root, root / "a" / "b" / "to_root")
    os.symlink(root / "a", root / "a" / "b" / "to_a")
    os.symlink("..", root / "c" / "parent")
    os.symlink(root / "c", root / "a" / "c_again")
    return images


def test_trainer_image_scan_ends_on_link_loops_and_lists_each_image_once(tmp_path):
    images = _looped_tree(tmp_path / "data")
    proc = subprocess.run([sys.executable, "-c", SCAN, str(tmp_path / "data")], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    found = [Path(line) for line in proc.stdout.split()]
    assert sorted(os.path.realpath(p) for p in found) == sorted(os.path.realpath(p) for p in images)


def test_model_listing_ends_on_the_same_loops(tmp_path, monkeypatch):
    from adain_nodes.host.paths import MODELS_FOLDER, list_files

    root = tmp_path / "models"
    _looped_tree(root)
    for folder in (root, root / "a" / "b", root / "c"):
        (folder / "w.safetensors").write_bytes(b"")
    monkeypatch.setenv("ADAIN_MODELS_DIR", str(root))
    listed = [n for n in list_files(MODELS_FOLDER) if n.endswith("w.safetensors")]
    assert sorted(listed) == ["a/b/w.safetensors", "c/w.safetensors", "w.safetensors"]
