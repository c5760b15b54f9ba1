"""``tinynas data check|convert|synth`` through the real argument parser."""

import json

from tinynas.cli import main


def test_synth_then_check_clean(tmp_path, capsys):
    out = tmp_path / "syn"
    assert main(["data", "synth", str(out), "--images", "5", "--val-images", "2", "--size", "48",
                 "--classes", "rectangle,ellipse", "--seed", "4"]) == 0
    data = json.loads((out / "annotations" / "train.json").read_text())
    assert len(data["images"]) == 5 and [c["name"] for c in data["categories"]] == ["rectangle", "ellipse"]
    assert len(list((out / "images" / "val").glob("*.png"))) == 2
    capsys.readouterr()
    assert main(["data", "check", str(out / "annotations" / "train.json"), "--images", str(out / "images" / "train")]) == 0
    assert "no fatal problems, 0 warning(s)" in capsys.readouterr().out


def test_check_lists_problems_and_fails(tmp_path, capsys):
    out = tmp_path / "syn"
    main(["data", "synth", str(out), "--images", "3", "--val-images", "0", "--size", "48", "--objects", "1"])
    ann = out / "annotations" / "train.json"
    data = json.loads(ann.read_text())
    data["annotations"][0]["category_id"] = 9
    ann.write_text(json.dumps(data))
    (out / "images" / "train" / "000002.png").unlink()
    capsys.readouterr()
    assert main(["data", "check", str(ann), "--images", str(out / "images" / "train")]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("000002.png: image 3: image file missing [fatal]")
    assert lines[1].endswith("000000.png: image 1: annotation 1: unknown category id 9 [fatal]")
    assert "2 fatal problem(s)" in lines[-1]


def test_convert_voc_and_yolo(tmp_path, capsys):
    xml = tmp_path / "xml"
    xml.mkdir()
    (xml / "a.xml").write_text("<annotation><filename>a.jpg</filename><size><width>50</width><height>40</height>"
                               "</size><object><name>cat</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>10</xmax>"
                               "<ymax>20</ymax></bndbox></object></annotation>")
    assert main(["data", "convert", "--from", "voc", str(xml), "--out", str(tmp_path / "voc.json")]) == 0
    assert "1 images, 1 boxes, 1 classes (cat)" in capsys.readouterr().out
    assert json.loads((tmp_path / "voc.json").read_text())["annotations"][0]["bbox"] == [0, 0, 10, 20]

    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "a.txt").write_text("1 0.5 0.5 0.2 0.5\n")
    synth = tmp_path / "syn"
    main(["data", "synth", str(synth), "--images", "1", "--val-images", "0", "--size", "40"])
    images = synth / "images" / "train"
    (images / "000000.png").rename(images / "a.png")
    assert main(["data", "convert", "--from", "yolo", str(labels), "--images", str(images), "--classes", "x,y",
                 "--out", str(tmp_path / "yolo.json")]) == 0
    ann = json.loads((tmp_path / "yolo.json").read_text())["annotations"][0]
    assert ann["category_id"] == 2 and ann["bbox"] == [16, 10, 8, 20]


def test_user_errors_are_one_line_exit_2(tmp_path, capsys):
    assert main(["data", "convert", "--from", "yolo", str(tmp_path), "--out", str(tmp_path / "o.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--images" in err[0]
    assert main(["data", "convert", "--from", "voc", str(tmp_path / "nope"), "--out", str(tmp_path / "o.json")]) == 2
    assert "not a folder of VOC XML files" in capsys.readouterr().err
    assert main(["data", "check", str(tmp_path / "missing.json"), "--images", str(tmp_path)]) == 2
    assert "annotation file not found" in capsys.readouterr().err
    assert main(["data", "synth", str(tmp_path / "s"), "--classes", "hexagon"]) == 2
    assert "unknown shape" in capsys.readouterr().err
