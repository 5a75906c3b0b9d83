"""The key=value grammar and the typed mode arguments: command lines → values, or → one exact error line.

Command lines are split with shlex, as a shell would, so `imgsz=[640, 480]` arrives as two tokens.
"""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path

import pytest

from yolonas_cli import cfg
from yolonas_cli.cfg import (
    MODES,
    BenchmarkArgs,
    ExportArgs,
    InfoArgs,
    PredictArgs,
    ServeArgs,
    ValArgs,
    make_args,
)
from yolonas_cli.cli.parse import merge_tokens, parse_args, smart_value
from yolonas_cli.core.errors import UsageError

# (mode, command line after the mode, expected values after coercion into the mode's dataclass)
GOOD = [
    ("predict", "", {"source": None, "conf": 0.25, "imgsz": 640, "device": "auto", "save": True}),
    ("predict", "conf=0.5", {"conf": 0.5}),
    ("predict", "conf = 0.5", {"conf": 0.5}),
    ("predict", "conf= 0.5", {"conf": 0.5}),
    ("predict", "conf =0.5", {"conf": 0.5}),
    ("predict", "--conf=0.5", {"conf": 0.5}),
    ("predict", "conf=.5 iou=1", {"conf": 0.5, "iou": 1.0}),
    ("predict", "conf=0.3 conf=0.4", {"conf": 0.4}),
    ("predict", "imgsz=640,480", {"imgsz": (640, 480)}),
    ("predict", "imgsz=[640, 480]", {"imgsz": (640, 480)}),
    ("predict", "imgsz = [ 640 , 480 ]", {"imgsz": (640, 480)}),
    ("predict", "imgsz=(320,320)", {"imgsz": (320, 320)}),
    ("predict", "imgsz=630", {"imgsz": 640}),
    ("predict", "imgsz=[100,200]", {"imgsz": (128, 224)}),
    ("predict", "imgsz=640,", {"imgsz": 640}),
    ("predict", "save_txt", {"save_txt": True}),
    ("predict", "--save_txt save_conf", {"save_txt": True, "save_conf": True}),
    ("predict", "save=false half=TRUE rect=True", {"save": False, "half": True, "rect": True}),
    ("predict", "source=0", {"source": 0}),
    ("predict", "source=bus.jpg", {"source": "bus.jpg"}),
    ("predict", "source=https://example.com/bus.jpg", {"source": "https://example.com/bus.jpg"}),
    ("predict", "source='path/my photo.jpg'", {"source": "path/my photo.jpg"}),
    ("predict", "source=1e2", {"source": "1e2"}),
    ("predict", "source=None", {"source": None}),
    ("predict", "classes=0", {"classes": [0]}),
    ("predict", "classes=[0, 2]", {"classes": [0, 2]}),
    ("predict", "classes=0,2", {"classes": [0, 2]}),
    ("predict", "classes=NONE", {"classes": None}),
    ("predict", "name=123 project=runs/x", {"name": "123", "project": "runs/x"}),
    ("predict", "name=none project=true", {"name": None, "project": "true"}),
    ("predict", "device=0", {"device": "cuda:0"}),
    ("predict", "device=CUDA:1", {"device": "cuda:1"}),
    ("predict", "device=cpu", {"device": "cpu"}),
    ("predict", "device=mps", {"device": "mps"}),
    ("predict", "max_det=1_000 batch=8 vid_stride=2", {"max_det": 1000, "batch": 8, "vid_stride": 2}),
    ("predict", "model = yolo_nas_l.pt source = img.png", {"model": "yolo_nas_l.pt", "source": "img.png"}),
    ("predict", "model=123", {"model": "123"}),
    ("predict", "line_width=2 show_labels=False", {"line_width": 2, "show_labels": False}),
    ("predict", "verbose=false weights_dir=~/w", {"verbose": False, "weights_dir": "~/w"}),
    ("val", "", {"data": "coco8.yaml", "conf": 0.001, "batch": 16, "split": "val", "protocol": "coco"}),
    ("val", "split=TEST protocol=sg workers=0", {"split": "test", "protocol": "sg", "workers": 0}),
    ("val", "data=coco.yaml save_json plots=False", {"data": "coco.yaml", "save_json": True, "plots": False}),
    ("export", "", {"format": "onnx", "batch": 1, "opset": None, "fraction": 1.0}),
    ("export", "format=trt", {"format": "engine"}),
    ("export", "format=TensorRT", {"format": "engine"}),
    (
        "export",
        "format=openvino int8 data=coco128.yaml fraction=0.5",
        {"format": "openvino", "int8": True, "data": "coco128.yaml", "fraction": 0.5},
    ),
    ("export", "opset=17 dynamic simplify nms", {"opset": 17, "dynamic": True, "simplify": True, "nms": True}),
    ("info", "device=cuda imgsz=320", {"device": "cuda", "imgsz": 320}),
    ("benchmark", "", {"formats": None, "runs": 20, "warmup": 3, "int8": True}),
    ("benchmark", "formats=[onnx, openvino]", {"formats": ["onnx", "openvino"]}),
    ("benchmark", "formats=onnx", {"formats": ["onnx"]}),
    ("benchmark", "formats=\"['onnx','trt']\"", {"formats": ["onnx", "engine"]}),
    ("benchmark", "formats=onnx,pt,onnx runs=5 warmup=0", {"formats": ["onnx", "pytorch"], "runs": 5, "warmup": 0}),
]

_HELP = "Run 'yolo-nas {mode} --help' to list the arguments."
_IMGSZ = "use a positive whole number or (h, w), e.g. imgsz=640 or imgsz=640,480"
_DEVICE = "use auto, cpu, cuda, cuda:N (or just N) or mps"
_SOURCE = "use a path, URL, glob or stream, or a webcam index >= 0"
_CLASSES = "use class ids >= 0, e.g. classes=0 or classes=[0,2]"
_FORMATS = "use one of onnx, torchscript, openvino, engine"

# (mode, command line after the mode, the exact one-line error message; the exit code is always 2)
BAD = [
    ("predict", "confx=0.5", "'confx' is not a valid argument for predict. Did you mean 'conf'?"),
    (
        "predict",
        "save_tx",
        "'save_tx' is not a valid argument for predict. Did you mean 'save_txt', 'save' or 'save_json'?",
    ),
    ("predict", "zzz=1", "'zzz' is not a valid argument for predict. " + _HELP.format(mode="predict")),
    ("predict", "data=x.yaml", "'data' is not a valid argument for predict. " + _HELP.format(mode="predict")),
    ("info", "conf=0.5", "'conf' is not a valid argument for info. " + _HELP.format(mode="info")),
    ("predict", "imgsz", "'imgsz' needs a value, e.g. imgsz=640"),
    ("predict", "conf", "'conf' needs a value, e.g. conf=0.25"),
    ("predict", "model=", "'model' needs a value, e.g. model=yolo_nas_s.pt"),
    ("predict", "source=", "'source' needs a value, e.g. source=rocket.jpg"),
    ("predict", "classes", "'classes' needs a value, e.g. classes=[0,2]"),
    ("predict", "save=", "'save' needs a value, e.g. save=True"),
    ("predict", "conf=1.5", "conf=1.5 is out of range: use a number between 0 and 1"),
    ("predict", "iou=-0.1", "iou=-0.1 is out of range: use a number between 0 and 1"),
    ("predict", "conf=abc", "conf=abc is not a number: use a number between 0 and 1"),
    ("predict", "conf=True", "conf=True is not a number: use a number between 0 and 1"),
    ("predict", "batch=2.5", "batch=2.5 is not a whole number: use a whole number >= 1"),
    ("predict", "batch=2.0", "batch=2.0 is not a whole number: use a whole number >= 1"),
    ("predict", "batch=0", "batch=0 is out of range: use a whole number >= 1"),
    ("predict", "max_det=0", "max_det=0 is out of range: use a whole number >= 1"),
    ("predict", "vid_stride=0", "vid_stride=0 is out of range: use a whole number >= 1"),
    ("predict", "line_width=0", "line_width=0 is out of range: use a whole number >= 1 or None"),
    ("predict", "save=1", "save=1 is not a boolean: use save=True or save=False"),
    ("predict", "save_txt=yes", "save_txt=yes is not a boolean: use save_txt=True or save_txt=False"),
    ("predict", "verbose=None", "verbose=None is not a boolean: use verbose=True or verbose=False"),
    ("predict", "imgsz=0", "imgsz=0 is out of range: " + _IMGSZ),
    ("predict", "imgsz=640,-1", "imgsz=640,-1 is out of range: " + _IMGSZ),
    ("predict", "imgsz=abc", "imgsz=abc is not valid: " + _IMGSZ),
    ("predict", "imgsz=640.5", "imgsz=640.5 is not valid: " + _IMGSZ),
    ("predict", "imgsz=True", "imgsz=True is not valid: " + _IMGSZ),
    ("predict", "imgsz=[640,480,3]", "imgsz=[640,480,3] is not valid: " + _IMGSZ),
    ("predict", "device=gpu", "device=gpu is not valid: " + _DEVICE),
    ("predict", "device=0,1", "device=0,1 is not valid: " + _DEVICE),
    ("predict", "device=-1", "device=-1 is not valid: " + _DEVICE),
    ("predict", "source=-1", "source=-1 is not valid: " + _SOURCE),
    ("predict", "classes=[-1]", "classes=[-1] is not valid: " + _CLASSES),
    ("predict", "classes=[]", "classes=[] is not valid: " + _CLASSES),
    ("predict", "classes=person", "classes=person is not valid: " + _CLASSES),
    ("predict", "imgsz=[640,", "'imgsz=[640,' has an unmatched '[' or '('"),
    ("predict", "name=v2)", "'name=v2)' has an unmatched ']' or ')'"),
    ("predict", "=5", "'=5' has no key: use key=value"),
    ("predict", "cfg=", "'cfg' needs a value, e.g. cfg=my_args.yaml"),
    ("predict", "cfg=/no/such/args.yaml", "cfg=/no/such/args.yaml: no such file"),
    ("val", "split=dev", "split=dev is not valid: use one of val, test, train"),
    ("val", "split=tset", "split=tset is not valid: use one of val, test, train. Did you mean 'test'?"),
    ("val", "protocol=yolo", "protocol=yolo is not valid: use one of coco, sg"),
    ("val", "workers=-1", "workers=-1 is out of range: use a whole number >= 0"),
    ("export", "format=onx", "format=onx is not valid: " + _FORMATS + ". Did you mean 'onnx'?"),
    ("export", "format=pytorch", "format=pytorch is not valid: " + _FORMATS),
    ("export", "fraction=0", "fraction=0 is out of range: use a number > 0 and <= 1"),
    ("export", "opset=0", "opset=0 is out of range: use a whole number >= 1 or None"),
    (
        "benchmark",
        "formats=[onnx,tflite]",
        "formats=tflite is not valid: use one of pytorch, onnx, torchscript, openvino, engine",
    ),
    ("benchmark", "runs=0", "runs=0 is out of range: use a whole number >= 1"),
    ("benchmark", "warmup=-1", "warmup=-1 is out of range: use a whole number >= 0"),
]


@pytest.mark.parametrize(("mode", "line", "expected"), GOOD, ids=[f"{m}:{line}" for m, line, _ in GOOD])
def test_good_command_lines(mode: str, line: str, expected: dict) -> None:
    args = parse_args(mode, shlex.split(line))
    assert type(args) is cfg.MODE_ARGS[mode]
    got = {key: getattr(args, key) for key in expected}
    assert got == expected
    for key, value in expected.items():  # same types too: 1.0 is not 1, (640, 480) is not [640, 480]
        assert type(got[key]) is type(value), key


@pytest.mark.parametrize(("mode", "line", "message"), BAD, ids=[f"{m}:{line}" for m, line, _ in BAD])
def test_bad_command_lines(mode: str, line: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_args(mode, shlex.split(line))
    assert str(info.value) == message
    assert info.value.exit_code == 2
    assert "\n" not in str(info.value)


def test_tables_are_big_enough() -> None:
    assert len(GOOD) >= 30 and len(BAD) >= 30


@pytest.mark.parametrize(
    ("tokens", "merged"),
    [
        (["conf", "=", "0.5"], ["conf=0.5"]),
        (["conf=", "0.5", "save"], ["conf=0.5", "save"]),
        (["conf", "=0.5"], ["conf=0.5"]),
        (["imgsz=[640,", "480]"], ["imgsz=[640,480]"]),
        (["imgsz", "=", "[640,", "480", "]", "save"], ["imgsz=[640,480]", "save"]),
        (["model=", "source=x"], ["model=", "source=x"]),
        (["a=1", "b=2"], ["a=1", "b=2"]),
    ],
)
def test_merge_tokens(tokens: list[str], merged: list[str]) -> None:
    assert merge_tokens(tokens) == merged


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("none", None),
        ("NONE", None),
        ("True", True),
        ("tRuE", True),
        ("false", False),
        ("640", 640),
        (".5", 0.5),
        ("1e2", 100.0),
        ("640,480", (640, 480)),
        ("[0,2]", [0, 2]),
        ("'quoted'", "quoted"),
        ("bus.jpg", "bus.jpg"),
        ("cuda:0", "cuda:0"),
        ("01", "01"),
        ("__import__('os')", "__import__('os')"),
        ("https://x.org/a.jpg", "https://x.org/a.jpg"),
    ],
)
def test_smart_value(text: str, value: object) -> None:
    assert smart_value(text) == value
    assert type(smart_value(text)) is type(value)


def test_every_mode_has_a_dataclass_and_every_field_a_help_line() -> None:
    classes = {
        "predict": PredictArgs,
        "val": ValArgs,
        "export": ExportArgs,
        "info": InfoArgs,
        "benchmark": BenchmarkArgs,
        "serve": ServeArgs,
    }
    assert classes == cfg.MODE_ARGS and tuple(classes) == MODES
    for mode, klass in classes.items():
        assert klass.mode == mode
        klass()  # the defaults are valid
        for f in dataclasses.fields(klass):
            assert f.metadata["help"] and "\n" not in f.metadata["help"], f.name
    common = ["model", "weights_dir", "verbose", "device", "imgsz"]
    assert [f.name for f in dataclasses.fields(InfoArgs)] == common


def test_make_args_validates_like_the_parser() -> None:
    args = make_args("predict", conf=1, model=Path("w/yolo_nas_m.pt"), imgsz=[320, 256], classes=(1, 3))
    assert (args.conf, args.model, args.imgsz, args.classes) == (1.0, "w/yolo_nas_m.pt", (320, 256), [1, 3])
    with pytest.raises(UsageError, match=r"^'confx' is not a valid argument for predict\. Did you"):
        make_args("predict", confx=0.5)
    with pytest.raises(UsageError, match=r"^conf=0\.5 is not a number"):
        make_args("predict", conf="0.5")  # text is not a number from Python
    with pytest.raises(UsageError, match=r"^'predcit' is not a valid mode\. Did you mean 'predict'\?$"):
        make_args("predcit")


def test_numpy_scalars_are_accepted_from_python() -> None:
    np = pytest.importorskip("numpy")
    args = make_args("val", batch=np.int64(4), conf=np.float32(0.5), imgsz=np.int32(320))
    assert (args.batch, args.conf, args.imgsz) == (4, 0.5, 320)
    assert type(args.batch) is int and type(args.conf) is float and type(args.imgsz) is int


def test_python_api_may_pass_in_memory_sources() -> None:
    image = object()  # e.g. a numpy array or a PIL image: passed through for the loader to handle
    assert make_args("predict", source=image).source is image


def test_replace_revalidates() -> None:
    args = PredictArgs(conf=0.4)
    assert dataclasses.replace(args, device=1).device == "cuda:1"
    with pytest.raises(UsageError, match="conf=2 is out of range"):
        dataclasses.replace(args, conf=2)


def test_imgsz_rounding_warns_unless_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    assert PredictArgs(imgsz=630).imgsz == 640
    assert "WARNING: imgsz=630 is not a multiple of 32: using imgsz=640" in capsys.readouterr().err
    assert PredictArgs(imgsz=[630, 100], verbose=False).imgsz == (640, 128)
    assert PredictArgs(imgsz=(640, 480)).imgsz == (640, 480)
    assert capsys.readouterr().err == ""


def test_cfg_file_flat_and_command_line_wins(tmp_path: Path) -> None:
    file = tmp_path / "my.yaml"
    file.write_text("conf: 0.4\nimgsz: [320, 320]\nname: 2024\nsave_txt: true\ncfg: ignored.yaml\n")
    args = parse_args("predict", [f"cfg={file}", "conf=0.6"])
    assert (args.conf, args.imgsz, args.name, args.save_txt) == (0.6, (320, 320), "2024", True)


def test_cfg_file_with_one_section_per_mode(tmp_path: Path) -> None:
    file = tmp_path / "all.yaml"
    file.write_text("predict:\n  conf: 0.4\nval:\n  batch: 4\n  split: test\n")
    assert parse_args("val", [f"cfg={file}"]).batch == 4
    assert parse_args("predict", [f"cfg={file}"]).conf == 0.4
    assert parse_args("export", [f"cfg={file}"]).conf == 0.25  # no export section: defaults


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("confx: 1\n", "'confx' (in {file}) is not a valid argument for predict. Did you mean 'conf'?"),
        ("conf: 2\n", "conf=2 is out of range: use a number between 0 and 1"),
        ("- 1\n- 2\n", "cfg={file} must hold a mapping of key: value"),
        ("conf: [\n", "cfg={file} is not valid YAML: while parsing a flow node"),
    ],
)
def test_cfg_file_errors(tmp_path: Path, content: str, message: str) -> None:
    file = tmp_path / "bad.yaml"
    file.write_text(content)
    with pytest.raises(UsageError) as info:
        parse_args("predict", [f"cfg={file}"])
    assert str(info.value).startswith(message.format(file=file))
    assert "\n" not in str(info.value)
