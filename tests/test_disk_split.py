"""On-disk splits (``.npy`` files streamed by a DataLoader) against in-memory ones: the
same batches, the same training and the same predictions, bit for bit; the runner on real-format
AV-MNIST files, every protocol included, equal to the same data held in memory."""
import pickle

import numpy as np
import pytest
import torch

import i2m2bench
from i2m2bench.data.common.disk import DiskSplit, LoaderOptions, iter_chunks, open_npy, save_split
from i2m2bench.harness import planner as planner_mod
from i2m2bench.harness.config import TrainConfig
from i2m2bench.harness.runner import run_suite
from i2m2bench.harness.seeding import seed_everything
from i2m2bench.harness.store import read_rows
from i2m2bench.harness.training import predict, train_model
from i2m2bench.types import DataSplit, ModalitySpec, Split, Task, TaskSpec

SPEC = TaskSpec("disk_toy", "1", (ModalitySpec("a", (1, 6, 6), "image", "mlp", scale=1 / 255),
                                  ModalitySpec("b", (5,), "vector", "mlp")), "multiclass", 3)
WORKERS = [0, 2]


def _memory_split(n=53, seed=0, name="train") -> Split:
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(0, 256, (n, 1, 6, 6), generator=g, dtype=torch.uint8)
    b = torch.randn(n, 5, generator=g)  # non-integer floats, stored as they are
    y = (a.float().mean((1, 2, 3)) > 127.5).long() + (b[:, 0] > 0).long()
    return Split({"a": a, "b": b}, y, name)


@pytest.fixture
def pair(tmp_path):
    """(in-memory split, factory of the same data on disk with a given number of workers)."""
    mem = _memory_split()
    save_split(mem, tmp_path / "train")
    return mem, lambda w: DiskSplit.from_npy({m: tmp_path / "train" / f"{m}.npy" for m in ("a", "b")},
                                             tmp_path / "train" / "target.npy", "train",
                                             loader=LoaderOptions(num_workers=w))


def _same_batch(x, y):
    assert set(x.inputs) == set(y.inputs)
    for m in x.inputs:
        assert x.inputs[m].dtype == y.inputs[m].dtype == torch.float32
        assert torch.equal(x.inputs[m], y.inputs[m]), m
    assert torch.equal(x.target, y.target) and x.present is None and y.present is None


@pytest.mark.parametrize("workers", WORKERS)
def test_batches_are_bit_identical(pair, workers):
    mem, make = pair
    disk = make(workers)
    assert isinstance(disk, DataSplit) and len(disk) == len(mem) == 53
    order = torch.randperm(53, generator=torch.Generator().manual_seed(3))
    for o in (None, order):
        got = list(disk.batches(SPEC, 10, o))
        want = list(mem.batches(SPEC, 10, o))
        assert [len(b) for b in got] == [10, 10, 10, 10, 10, 3]
        for x, y in zip(got, want):
            _same_batch(x, y)
    _same_batch(disk.batch(order[:7], SPEC), mem.batch(order[:7], SPEC))
    assert torch.equal(disk.target, mem.target)


def test_stored_dtype_and_views(pair):
    mem, make = pair
    disk = make(0)
    assert disk.inputs["a"].dtype == torch.uint8 and disk.inputs["a"].shape == (53, 1, 6, 6)
    assert torch.equal(disk.inputs["b"], mem.inputs["b"])
    sub = disk.subset(40, 13, "tail")
    assert len(sub) == 13 and torch.equal(sub.inputs["a"], mem.inputs["a"][40:])
    _same_batch(sub.batch(torch.arange(3), SPEC), mem.batch(torch.arange(40, 43), SPEC))


def test_means_match_the_in_memory_ones(pair):
    mem, make = pair
    disk = make(0)
    assert torch.equal(disk.mean("a"), mem.mean("a"))  # integer values: exact float64 sums
    assert torch.allclose(disk.mean("b"), mem.mean("b"), rtol=0, atol=1e-12)
    assert disk.mean("a").dtype == torch.float64 and disk.mean("a").shape == (1, 6, 6)


def test_an_abandoned_pass_does_not_leak_into_the_next(pair):
    mem, make = pair
    disk = make(2)
    for i, _ in enumerate(disk.batches(SPEC, 4)):
        if i == 2:
            break
    order = torch.randperm(53, generator=torch.Generator().manual_seed(1))
    for x, y in zip(disk.batches(SPEC, 8, order), mem.batches(SPEC, 8, order)):
        _same_batch(x, y)


def _train(split, val, seed=0):
    seed_everything(seed)
    model = i2m2bench.build_fusion("late_fusion", SPEC, operator="concat", width=8)
    cfg = TrainConfig(lr=0.05, epochs=3, batch_size=8, patience=3, eval_batch_size=16)
    gen = seed_everything(seed)
    res = train_model(model, split, val, SPEC, cfg, gen, progress=False)
    return model, res


@pytest.mark.parametrize("workers", WORKERS)
def test_training_and_predictions_are_bit_identical(pair, tmp_path, workers):
    mem, make = pair
    mem_val = _memory_split(21, seed=5, name="val")
    disk_val = save_split(mem_val, tmp_path / "val", loader=LoaderOptions(num_workers=workers))
    m1, r1 = _train(mem, mem_val)
    m2, r2 = _train(make(workers), disk_val)
    assert r1.history == r2.history and r1.best_epoch == r2.best_epoch and r1.epochs_run == 3
    s1, s2 = m1.state_dict(), m2.state_dict()
    assert s1.keys() == s2.keys() and all(torch.equal(s1[k], s2[k]) for k in s1)
    assert torch.equal(predict(m1, mem_val, SPEC, 16), predict(m2, disk_val, SPEC, 16))


def test_workers_get_plain_data(pair):
    _, make = pair
    disk = make(2)
    list(disk.batches(SPEC, 10))  # the main process has mapped nothing; workers map their own
    disk.batch(torch.arange(3), SPEC)  # now the main process has a mapping too
    blob = pickle.dumps(disk._dataset)
    assert len(blob) < 2000  # paths, offsets, dtypes, shapes: no mapped data
    clone = pickle.loads(blob)
    from i2m2bench.data.common.disk import _unpack
    assert torch.equal(_unpack(clone[np.arange(4)], disk.columns, 4)["a"], disk.inputs["a"][:4])


def test_open_npy_and_chunks(tmp_path):
    x = np.arange(6 * 12, dtype=np.int16).reshape(6, 12)
    np.save(tmp_path / "x.npy", x)
    col = open_npy(tmp_path / "x.npy", (3, 4))
    assert (col.rows, col.shape, col.dtype) == (6, (3, 4), "<i2")
    got = np.concatenate([np.array(c) for c in iter_chunks(col.subset(1, 4))])
    assert np.array_equal(got, x[1:5].reshape(4, 3, 4))
    np.save(tmp_path / "f.npy", np.asfortranarray(x))
    with pytest.raises(ValueError, match="Fortran-order"):
        open_npy(tmp_path / "f.npy")
    with pytest.raises(ValueError, match="cannot be viewed as"):
        open_npy(tmp_path / "x.npy", (5,))


def test_big_endian_and_widened_dtypes(tmp_path):
    a = (np.arange(4 * 3) % 256).astype(">u2").reshape(4, 3)  # uint16, non-native byte order
    np.save(tmp_path / "a.npy", a)
    spec = TaskSpec("t", "1", (ModalitySpec("a", (3,), "vector", scale=0.5),), "multiclass", 2)
    disk = DiskSplit.from_npy({"a": tmp_path / "a.npy"}, torch.zeros(4, dtype=torch.long),
                              loader=LoaderOptions(num_workers=0))
    mem = Split({"a": torch.from_numpy(a.astype(np.int64))}, torch.zeros(4, dtype=torch.long))
    _same_batch(disk.batch(torch.tensor([3, 0]), spec), mem.batch(torch.tensor([3, 0]), spec))


def test_real_avmnist_is_memory_mapped(tmp_path, write_avmnist):
    write_avmnist(tmp_path)
    task = i2m2bench.build_task("avmnist", data_root=str(tmp_path), split_sizes=(30, 6, 12))
    tr, va = task.splits["train"], task.splits["val"]
    assert all(isinstance(s, DiskSplit) for s in task.splits.values())
    # train and validation are row ranges of the same (train) files
    assert tr.columns["audio"].path == va.columns["audio"].path
    assert (tr.columns["audio"].start, va.columns["audio"].start, va.columns["audio"].rows) == (0, 30, 6)


def test_fortran_order_files_are_read_into_memory(tmp_path, write_avmnist):
    d = write_avmnist(tmp_path)
    img = np.load(d / "image" / "test_data.npy")
    np.save(d / "image" / "test_data.npy", np.asfortranarray(img))
    task = i2m2bench.build_task("avmnist", data_root=str(tmp_path), split_sizes=(30, 6, 12))
    te = task.splits["test"]
    assert isinstance(te, Split) and te.inputs["image"].dtype == torch.uint8
    assert np.array_equal(te.inputs["image"].numpy().reshape(12, 784), img)


# ----------------------------------------------------------------------------- the runner
METHODS = ["image_only", "audio_only", "late_fusion", "i2m2_lf", "i2m2_lf_inter_imputed"]
PROTOCOLS = "['test', 'shift:*', 'missing:*', 'missing_rate:0.5', 'perturb:audio:snr@0.5,1']"


def _suite(tmp_path, sub, workers):
    bindings = ["train.epochs = 2", "train.batch_size = 8", "train.eval_batch_size = 5",
                "suite.dataset_options = {'source': 'real', 'split_sizes': (30, 6, 12)}",
                f"suite.protocols = {PROTOCOLS}", "late_fusion/method.options = "
                "{'operator': 'concat', 'width': 6, 'impute_with': 'mean'}",
                f"disk_loader.num_workers = {workers}"]
    return run_suite(["avmnist.gin"], bindings, methods=METHODS, seeds=[0], data_root=str(tmp_path),
                     out=tmp_path / sub / "runs", results_dir=tmp_path / sub / "lb", progress=False,
                     render=False, log=lambda s: None)


def _in_memory(task: Task) -> Task:
    """The same task with every split copied into memory as the loader stored it before
    (integer-valued inputs as uint8)."""
    def mem(s):
        return Split({m: x.to(torch.uint8) for m, x in s.inputs.items()}, s.target.clone(), s.name)
    return Task(task.spec, {k: mem(s) for k, s in task.splits.items()}, {}, task.options)


def _records(run):
    return sorted((r["method"], r["protocol"], r["value"]) for r in read_rows(run.results_path)
                  if r["protocol"] != "train")


@pytest.mark.slow
def test_runner_on_disk_equals_in_memory(tmp_path, write_avmnist, monkeypatch):
    write_avmnist(tmp_path)
    disk = _suite(tmp_path, "disk", workers=2)
    assert not disk.failures
    kinds = {type(s) for s in disk.task.splits.values()}
    assert kinds == {DiskSplit}
    build = planner_mod.build_task
    monkeypatch.setattr(planner_mod, "build_task", lambda *a, **k: _in_memory(build(*a, **k)))
    mem = _suite(tmp_path, "mem", workers=0)
    assert {type(s) for s in mem.task.splits.values()} == {Split}
    got, want = _records(disk), _records(mem)
    protocols = {p for _, p, _ in got}
    assert {"val", "test", "missing:image", "missing:audio", "missing_rate:0.5",
            "perturb:audio:snr@0.5", "perturb:audio:snr@1"} <= protocols
    assert {m for m, _, _ in got} == set(METHODS)
    assert got == want  # every method, every protocol: the same value, bit for bit
    for item in disk.plan:  # and the same trained weights
        other = tmp_path / "mem" / "runs" / item.run_dir.relative_to(tmp_path / "disk" / "runs")
        a = torch.load(item.run_dir / "model.pt", weights_only=True)
        b = torch.load(other / "model.pt", weights_only=True)
        assert all(torch.equal(a[k], b[k]) for k in a)


TOY = ["suite.protocols = ['test', 'shift:*', 'missing:*', 'missing_rate:0.5', "
       "'perturb:a:gaussian@0.5,1', 'perturb:b:dropout@1']", "disk_loader.num_workers = 1"]


def test_runner_on_disk_toy_every_protocol(tmp_path, monkeypatch):
    """The toy suite (unimodal, late fusion, I2M2 pretrained then fine-tuned; every protocol, a
    shift set) with each split written to disk gives the same records as in memory."""
    def on_disk(task: Task) -> Task:
        def disk(s):
            return save_split(s, tmp_path / "data" / s.name)
        return Task(task.spec, {k: disk(s) for k, s in task.splits.items()},
                    {k: disk(s) for k, s in task.shifts.items()}, task.options)

    def run(sub):
        return run_suite(["toy_smoke.gin"], TOY, methods=["i2m2"], seeds=[0], out=tmp_path / sub / "runs",
                         results_dir=tmp_path / sub / "lb", progress=False, render=False,
                         log=lambda s: None)

    mem = run("mem")
    build = planner_mod.build_task
    monkeypatch.setattr(planner_mod, "build_task", lambda *a, **k: on_disk(build(*a, **k)))
    disk = run("disk")
    assert {type(s) for s in [*disk.task.splits.values(), *disk.task.shifts.values()]} == {DiskSplit}
    got, want = _records(disk), _records(mem)
    assert {"shift:noisier", "missing:a", "missing_rate:0.5", "perturb:b:dropout@1"} <= {p for _, p, _ in got}
    assert len(got) == len(want) > 30 and got == want


def test_avmnist_values_read_as_the_in_memory_loader_stored_them(tmp_path, write_avmnist):
    """Integer-valued float files are read as uint8 (cast where read; floats wider than float32
    via float32, as the checks see them); non-integer ones as they are stored — the batches equal
    those of the files converted into memory as the loader did before (``_in_memory``)."""
    from i2m2bench.data.avmnist.real import _in_memory

    d = write_avmnist(tmp_path)
    img = np.load(d / "image" / "train_data.npy").astype(np.float64)
    img[0, :3] = [99.99999999, -0.0, 255.0000000001]  # integers once rounded to float32
    np.save(d / "image" / "train_data.npy", img)
    aud = np.load(d / "audio" / "test_data.npy").astype(np.float32)
    aud[1, 0, :2] = [0.5, 254.25]  # not integers: kept as float32 values
    np.save(d / "audio" / "test_data.npy", aud)
    task = i2m2bench.build_task("avmnist", data_root=str(tmp_path), split_sizes=(30, 6, 12))
    tr, te = task.splits["train"], task.splits["test"]
    assert tr.columns["image"].cast == "u1" and te.columns["audio"].cast is None
    mem_img = _in_memory(img, (1, 28, 28), True)
    mem_aud = _in_memory(aud, (1, 112, 112), False)
    assert mem_img.dtype == torch.uint8 and mem_aud.dtype == torch.float32
    idx = torch.tensor([0, 5, 1])
    got = tr.batch(idx, task.spec).inputs["image"]
    assert torch.equal(got, mem_img[idx].float().mul_(1 / 255))
    assert got[0, 0, 0, 1].item() == 0.0 and str(got[0, 0, 0, 1].item()) == "0.0"  # not -0.0
    got = list(te.batches(task.spec, 5))[0].inputs["audio"]
    assert torch.equal(got, mem_aud[:5].float().mul_(1 / 255))


def test_default_workers_follow_the_device():
    opts = LoaderOptions()
    assert opts.workers(torch.device("cpu")) == 0  # the step keeps every core busy: read in place
    assert 1 <= opts.workers(torch.device("cuda")) <= 4
    assert LoaderOptions(num_workers=3).workers(torch.device("cpu")) == 3
    with pytest.raises(ValueError, match="num_workers must be >= 0"):
        LoaderOptions(num_workers=-1)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("workers", [None, 0])
def test_cuda_batches_pinned_and_bit_identical(pair, workers):
    """On CUDA: workers read and pin (default), the batch is copied without blocking and
    normalised on the GPU — the same bits as an in-memory split on the GPU."""
    mem, make = pair
    disk = DiskSplit(make(0).columns, mem.target, "train", LoaderOptions(num_workers=workers)).to("cuda")
    gpu = mem.to("cuda")
    order = torch.randperm(53, generator=torch.Generator().manual_seed(2))
    for x, y in zip(disk.batches(SPEC, 10, order), gpu.batches(SPEC, 10, order)):
        assert x.inputs["a"].is_cuda
        _same_batch(x, y)
    if workers is None:
        assert disk._stream().pin_memory


def test_rows_out_of_range_are_refused(pair):
    _, make = pair
    disk = make(0).subset(10, 20)
    for bad in ([19, 20], [-1, 0], [20, 21, 22]):
        with pytest.raises(IndexError, match="out of range for 20 rows"):
            disk.batch(torch.tensor(bad), SPEC)
