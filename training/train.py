"""One training run: split, baselines, train, re-estimate BatchNorm, evaluate, report, package.

A run folder holds everything needed to audit or repeat it::

    <run>/split.json  train.log  history.csv  checkpoints/{best,last}.keras
         report.json  report.html  *.svg  <name>-<version>/   (the packaged artifact)

``run_training`` is the order of the steps; each step is a function below it.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from runtime.artifact import VERIFICATION_IMAGES, VerificationBatch, utc_now, write_artifact
from runtime.guard import Guard
from training import data as data_mod
from training.architectures import ARCHITECTURES, backbone_layers, build_model, heatmap_layer
from training.baselines import baseline_warning, run_baselines
from training.evaluate import REVIEW_TARGET_ACCURACY, full_evaluation

log = logging.getLogger("training")


@dataclass
class TrainConfig:
    """Everything a run depends on; saved into report.json so a run can be repeated."""

    data_dir: str
    arch: str = "cml1"
    weights: str | None = None  # None (from scratch), "imagenet" or a weights file path
    epochs: int = 100
    patience: int = 15
    # wall-clock budget for fitting: no epoch is started that would end after it (None: none)
    max_fit_minutes: float | None = None
    img_size: int | None = None
    batch_size: int = 32
    seed: int = 42
    groups: str | None = None
    label_map: str | None = None
    out: str = "runs"
    name: str | None = None
    version: str | None = None
    learning_rate: float = 1e-3
    finetune_learning_rate: float = 1e-5
    # constant (the study's Adam at one rate) | plateau (halve it when validation loss stalls)
    lr_schedule: str = "constant"
    head_epochs: int = 10  # frozen-backbone epochs before fine-tuning (pretrained only)
    augment: bool = True
    # colour recipe on the training split (training.stain.COLOR_RECIPES): strong | light | none
    color_augment: str = "strong"
    # reinhard | grayscale | macenko (refused): a layer inside the packaged model
    stain_normalize: str | None = None
    recompute_bn: bool = True
    review_target: float = REVIEW_TARGET_ACCURACY
    int8: bool = False  # also package the int8 variant, when it keeps the accuracy
    synthetic: bool | None = None  # None: from the data folder's SYNTHETIC.txt marker
    note: str = ""
    extra: dict = field(default_factory=dict)

    def resolved_size(self) -> int:
        return self.img_size or ARCHITECTURES[self.arch].default_size


@dataclass
class TrainResult:
    run_dir: Path
    artifact_dir: Path
    report: dict


def parse_weights(value: str | None) -> str | None:
    """'none' -> None, 'imagenet' -> 'imagenet', anything else is a file path."""
    if value is None or value.lower() == "none":
        return None
    return "imagenet" if value.lower() == "imagenet" else value


def color_recipe(name: str):
    """The ``training.stain.StainAugmentConfig`` a recipe name stands for (None: "none")."""
    from training.stain import COLOR_RECIPES

    if name not in COLOR_RECIPES:
        raise ValueError(f"unknown colour augmentation {name!r}; one of {sorted(COLOR_RECIPES)}")
    return COLOR_RECIPES[name]


def color_augmentation_facts(name: str) -> dict:
    """The recipe's name and ranges, for the report (the name alone would not say them)."""
    recipe = color_recipe(name)
    return {"recipe": name, **({} if recipe is None else asdict(recipe))}


def _setup_logging(run_dir: Path) -> list[logging.Handler]:
    """Log to <run>/train.log and, unless something already does, to stderr."""
    handler = logging.FileHandler(run_dir / "train.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    added: list[logging.Handler] = [handler]
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    if not any(getattr(h, "stream", None) is sys.stderr for h in root.handlers):
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        added.append(console)
    for h in added:
        root.addHandler(h)
    return added


def class_weights(y: np.ndarray, n_classes: int) -> dict[int, float]:
    """'Balanced' weights n / (k * count) so small classes count as much as big ones."""
    counts = np.bincount(y, minlength=n_classes).astype(float)
    return {i: float(len(y) / (n_classes * c)) if c else 0.0 for i, c in enumerate(counts)}


#: ``lr_schedule="plateau"``: halve the rate after this many epochs without a lower
#: validation loss, down to 1/64 of where it started. Strong colour jitter makes every
#: epoch's validation loss noisy at a constant rate (the batches' BatchNorm statistics
#: are those of jittered images), so the rate has to come down for the fit to settle.
PLATEAU_PATIENCE = 4
PLATEAU_FACTOR = 0.5
PLATEAU_MIN_SHARE = 1 / 64


def _callbacks(
    run_dir: Path,
    patience: int,
    append: bool,
    deadline: float | None = None,
    *,
    lr: float,
    lr_schedule: str = "constant",
):
    import keras

    class TimeBudget(keras.callbacks.Callback):
        """Stop before an epoch that would end after ``deadline`` (time.monotonic()).

        Early stopping then restores the best epoch's weights, as when patience runs
        out, and the run evaluates and packages as usual.
        """

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.monotonic()

        def on_epoch_end(self, epoch, logs=None):
            assert deadline is not None
            if time.monotonic() + (time.monotonic() - self.t0) > deadline:
                log.info("epoch %d: the fitting time budget is spent, stopping", epoch + 1)
                self.model.stop_training = True

    class EpochLog(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.monotonic()

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            log.info(
                "epoch %d: loss %.4f acc %.4f val_loss %.4f val_acc %.4f (%.0f s)",
                epoch + 1,
                logs.get("loss", float("nan")),
                logs.get("accuracy", float("nan")),
                logs.get("val_loss", float("nan")),
                logs.get("val_accuracy", float("nan")),
                time.monotonic() - self.t0,
            )

    ckpt = run_dir / "checkpoints"
    ckpt.mkdir(exist_ok=True)
    return [
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=patience, restore_best_weights=True, verbose=1
        ),
        keras.callbacks.ModelCheckpoint(
            ckpt / "best.keras", monitor="val_loss", save_best_only=True
        ),
        keras.callbacks.ModelCheckpoint(ckpt / "last.keras"),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=append),
        EpochLog(),
        *([TimeBudget()] if deadline is not None else []),
        *(
            [
                keras.callbacks.ReduceLROnPlateau(
                    monitor="val_loss",
                    factor=PLATEAU_FACTOR,
                    patience=PLATEAU_PATIENCE,
                    min_lr=lr * PLATEAU_MIN_SHARE,
                    verbose=1,
                )
            ]
            if lr_schedule == "plateau"
            else []
        ),
    ]


def recompute_batchnorm(model, x: np.ndarray, batch_size: int) -> int:
    """Re-estimate trainable BatchNorm statistics on un-augmented images; weights unchanged.

    During training the moving averages track augmented batches (and lag the weights);
    a cumulative average over clean training batches matches what inference sees. This
    lifted test accuracy ~95 % -> ~98 % on Taleqani (ML-NOTES). Returns layers updated.
    """
    import keras

    from training.augment import eval_dataset

    bns = [
        layer
        for layer in model.layers
        if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable
    ]
    if not bns:
        return 0
    momenta = [layer.momentum for layer in bns]
    for layer in bns:
        layer.moving_mean.assign(np.zeros(layer.moving_mean.shape, np.float32))
        layer.moving_variance.assign(np.ones(layer.moving_variance.shape, np.float32))
    try:
        for k, xb in enumerate(eval_dataset(x, batch_size=batch_size)):
            for layer in bns:
                layer.momentum = k / (k + 1)  # running mean over batches: first batch replaces
            model(xb, training=True)
    finally:
        for layer, m in zip(bns, momenta, strict=True):
            layer.momentum = m
    return len(bns)


def _bn_state(model):
    import keras

    return [
        (layer.moving_mean.numpy().copy(), layer.moving_variance.numpy().copy())
        for layer in model.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    ]


def _set_bn_state(model, state) -> None:
    import keras

    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer, (mean, var) in zip(bns, state, strict=True):
        layer.moving_mean.assign(mean)
        layer.moving_variance.assign(var)


def predict(model, x: np.ndarray, batch_size: int = 32) -> np.ndarray:
    from training.augment import eval_dataset

    if len(x) == 0:
        return np.zeros((0, model.output.shape[-1]), np.float32)
    return np.asarray(model.predict(eval_dataset(x, batch_size=batch_size), verbose=0))


def _fit_phase(
    model,
    train_ds,
    val_ds,
    *,
    lr,
    epochs,
    initial_epoch,
    cw,
    run_dir,
    patience,
    append,
    verbose,
    deadline=None,
    lr_schedule="constant",
):
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=lr),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    hist = model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=epochs,
        initial_epoch=initial_epoch,
        class_weight=cw,
        callbacks=_callbacks(run_dir, patience, append, deadline, lr=lr, lr_schedule=lr_schedule),
        verbose=verbose,
        shuffle=False,  # the tf.data pipeline shuffles, seeded
    )
    return hist.history


def source_metrics(probs: np.ndarray, y: np.ndarray) -> dict:
    """n, accuracy and macro F1 over the classes present (one source may lack some)."""
    from sklearn.metrics import f1_score

    pred = probs.argmax(axis=1)
    present = sorted(set(y.tolist()))
    return {
        "n": len(y),
        "accuracy": float((pred == y).mean()),
        "macro_f1": float(f1_score(y, pred, labels=present, average="macro", zero_division=0)),
        "classes_present": len(present),
    }


def clinical_validity(
    model,
    classes: list[str],
    arrays: dict,
    test_samples,
    *,
    seed: int,
    batch_size: int = 32,
    nonsmear_per_kind: int = 25,
    guard=None,
    color_augment: str = "light",
) -> dict:
    """Robustness to stain shifts, metrics per source, and the out-of-scope guard.

    Returns ``robustness``, ``per_source`` (None without sources), ``ood`` (the guard's
    facts, flagged rates on validation, test and generated non-smears) and ``guard``:
    the one given (a packaged model's) or one fitted here on the training split, with the
    colour recipe the model was trained with (``color_augment``).
    """
    from training.nonsmear import KINDS, generate
    from training.ood import FeatureExtractor, fit_guard, guard_facts, reason_counts
    from training.robustness import robustness

    (x_tr, y_tr), (x_va, _), (x_te, y_te) = (arrays[p] for p in data_mod.SPLITS)
    if guard is None:
        recipe = color_recipe(color_augment)
        guard = fit_guard(
            model,
            x_tr,
            y_tr,
            x_va,
            len(classes),
            batch_size,
            stain_augment=recipe is not None,
            recipe=recipe,
        )
    extract = FeatureExtractor(model, guard.spec)
    t0 = time.monotonic()
    rob = robustness(
        lambda b: predict(model, b, batch_size),
        x_te,
        y_te,
        seed=seed,
        flag_fn=lambda b: guard.flag(extract(b, batch_size)[0]),
    )
    rob["seconds"] = time.monotonic() - t0
    log.info(
        "robustness: clean %.4f; %s",
        rob["clean"]["accuracy"],
        ", ".join(f"{r['label']} {r['accuracy']:.4f}" for r in rob["shifts"]),
    )

    per_source = None
    sources = [s.source for s in test_samples]
    if any(sources):
        probs = predict(model, x_te, batch_size)
        per_source = {}
        for src in sorted(set(sources)):
            idx = np.array([i for i, s in enumerate(sources) if s == src])
            per_source[src or "(none)"] = source_metrics(probs[idx], y_te[idx])

    size = x_te.shape[1]
    sets = {
        "validation": x_va,
        "test": x_te,
        **{
            f"generated {k}": generate(k, nonsmear_per_kind, size, seed=seed, smears=x_te)
            for k in KINDS
        },
    }
    reasons = {name: guard.reasons(extract(x, batch_size)[0]) for name, x in sets.items()}
    ood = {
        **guard_facts(guard),
        "flagged": {
            name: float(np.mean([r is not None for r in rs])) if rs else 0.0
            for name, rs in reasons.items()
        },
        "reasons": {name: reason_counts(rs) for name, rs in reasons.items()},
    }
    log.info(
        "out-of-scope guard: threshold %.2f; flagged %s",
        guard.threshold,
        {k: round(v, 3) for k, v in ood["flagged"].items()},
    )
    return {"robustness": rob, "per_source": per_source, "ood": ood, "guard": guard}


@dataclass
class _Fit:
    """What the training phases produced: per-epoch history and the facts of each phase."""

    history: dict[str, list[float]]
    phases: list[dict]
    seconds: float
    class_weights: dict[int, float]

    @property
    def best_epoch(self) -> int | None:
        val_loss = self.history.get("val_loss", [])
        return int(np.argmin(val_loss)) + 1 if val_loss else None


def run_training(
    cfg: TrainConfig,
    *,
    prepared: data_mod.PreparedData | None = None,
    arrays: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
    run_dir: Path | None = None,
    package_dir: Path | None = None,
) -> TrainResult:
    """Train ``cfg.arch`` on ``cfg.data_dir`` and write the run folder and artifact.

    ``prepared``/``arrays`` let ``compare`` reuse one split and decoded images for all
    architectures; ``package_dir`` puts the artifact elsewhere (``demo-model``).
    """
    import keras

    if cfg.arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {cfg.arch!r}")
    if cfg.stain_normalize == "macenko":
        # Refused before any work: the artifact could never be packaged.
        raise ValueError(
            "--stain-normalize macenko cannot be served: its layer's eigen- and "
            "singular-value decompositions have no ONNX equivalent (tf2onnx 1.17 converts "
            "neither), and the analysis workers run the ONNX graph; use reinhard"
        )
    weights = parse_weights(cfg.weights)
    size = cfg.resolved_size()
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    run_dir = Path(run_dir or Path(cfg.out) / f"{cfg.arch}-{stamp}")
    run_dir.mkdir(parents=True, exist_ok=True)
    handlers = _setup_logging(run_dir)
    t_start = time.monotonic()
    try:
        keras.utils.set_random_seed(cfg.seed)
        prepared = prepared if prepared is not None else _prepare_split(cfg)
        prepared.save(run_dir / "split.json")
        if cfg.stain_normalize not in (None, "reinhard", "grayscale", "macenko"):
            raise ValueError(f"unknown stain normalisation {cfg.stain_normalize!r}")
        color_recipe(cfg.color_augment)
        # Build first: a missing weights file should fail before minutes of decoding.
        model = build_model(cfg.arch, len(prepared.classes), size, weights)
        log.info(
            "run %s: %s at %d px, weights %s, split %s",
            run_dir,
            cfg.arch,
            size,
            weights or "none",
            prepared.sizes(),
        )
        arrays = arrays if arrays is not None else _decode(prepared, size)
        log.info(
            "decoded %d images in %.0f s",
            sum(len(a[0]) for a in arrays.values()),
            time.monotonic() - t_start,
        )
        stain_reference = None
        if cfg.stain_normalize:
            model, stain_reference = _build_with_stain_normalisation(
                cfg, len(prepared.classes), size, weights, arrays["train"][0]
            )
        (x_tr, y_tr), _, (x_te, y_te) = (arrays[p] for p in data_mod.SPLITS)
        baselines = run_baselines(x_tr, y_tr, x_te, y_te, seed=cfg.seed)
        log.info("baselines: %s", {k: round(v["accuracy"], 4) for k, v in baselines.items()})
        fit = _fit(model, cfg, arrays, len(prepared.classes), weights, run_dir)
        bn_info = _reestimate_batchnorm(model, cfg, arrays)
        evaluation, warning = _evaluate(model, cfg, arrays, prepared.classes, baselines)
        validity, guard = _check_validity(model, cfg, arrays, prepared)
        report = _report(
            cfg,
            prepared,
            name=cfg.name or f"leukweb-{cfg.arch}",
            version=cfg.version or stamp,
            size=size,
            fit=fit,
            bn_info=bn_info,
            baselines=baselines,
            warning=warning,
            evaluation=evaluation,
            validity=validity,
            stain_reference=stain_reference,
            wall_seconds=time.monotonic() - t_start,
        )
        report_files = _write_report(report, run_dir)
        artifact_dir = _package(
            model, report, prepared, guard, package_dir or run_dir, report_files, arrays
        )
        t = evaluation["test"]
        log.info(
            "done in %.0f s: test accuracy %.4f, macro F1 %.4f, ECE %.4f -> %.4f; artifact %s",
            time.monotonic() - t_start,
            t["accuracy"],
            t["macro_f1"],
            t["ece_before"],
            t["ece_after"],
            artifact_dir,
        )
        return TrainResult(run_dir, artifact_dir, report)
    finally:
        for h in handlers:
            logging.getLogger().removeHandler(h)
            h.close()


def _prepare_split(cfg: TrainConfig) -> data_mod.PreparedData:
    """The de-duplicated, stratified (or grouped) split of ``cfg.data_dir``."""
    return data_mod.prepare(
        Path(cfg.data_dir),
        seed=cfg.seed,
        label_map=data_mod.read_label_map(Path(cfg.label_map) if cfg.label_map else None),
        groups_csv=Path(cfg.groups) if cfg.groups else None,
    )


def _decode(prepared: data_mod.PreparedData, size: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every split's images at the model's input size, with their class indices."""
    return {
        part: data_mod.load_images(
            Path(prepared.data_dir), prepared.splits[part], prepared.classes, size
        )
        for part in data_mod.SPLITS
    }


def _build_with_stain_normalisation(
    cfg: TrainConfig, n_classes: int, size: int, weights: str | None, x_train: np.ndarray
):
    """The model rebuilt with a stain-normalisation layer first, and the layer's reference.

    The reference comes from the training split only; it is saved in the layer.
    """
    import keras

    from runtime.layers import LUMA, Grayscale, MacenkoNormalization, ReinhardNormalization
    from training import stain

    layer: keras.Layer
    if cfg.stain_normalize == "reinhard":
        reference = stain.reinhard_reference(x_train)
        layer = ReinhardNormalization(reference["mean"], reference["std"], name="stain_normalize")
    elif cfg.stain_normalize == "grayscale":
        reference = {"luma": list(LUMA)}  # nothing fitted: the same for every training set
        layer = Grayscale(name="stain_normalize")
    else:
        reference = stain.macenko_reference(x_train)
        layer = MacenkoNormalization(
            reference["stains"], reference["max_concentrations"], name="stain_normalize"
        )
    keras.utils.set_random_seed(cfg.seed)
    model = build_model(cfg.arch, n_classes, size, weights, normalizer=layer)
    log.info(
        "%s stain normalisation to the training split's reference %s",
        cfg.stain_normalize,
        reference,
    )
    return model, reference


def _fit(
    model, cfg: TrainConfig, arrays: dict, n_classes: int, weights: str | None, run_dir: Path
) -> _Fit:
    """Train from scratch in one phase, or (pretrained) head first, then fine-tune."""
    import keras

    from training.augment import eval_dataset, train_dataset

    (x_tr, y_tr), (x_va, y_va), _ = (arrays[p] for p in data_mod.SPLITS)
    cw = class_weights(y_tr, n_classes)
    train_ds = train_dataset(
        x_tr,
        y_tr,
        batch_size=cfg.batch_size,
        seed=cfg.seed,
        augment=cfg.augment,
        stain=color_recipe(cfg.color_augment),
    )
    val_ds = eval_dataset(x_va, y_va, batch_size=cfg.batch_size)
    fit = _Fit(history={}, phases=[], seconds=0.0, class_weights=cw)
    common = {
        "cw": cw,
        "run_dir": run_dir,
        "patience": cfg.patience,
        "lr_schedule": cfg.lr_schedule,
        "verbose": 1 if sys.stdout.isatty() else 2,
    }
    t_fit = time.monotonic()
    if cfg.max_fit_minutes is not None:
        common["deadline"] = t_fit + 60 * cfg.max_fit_minutes
    start_epoch = 0
    if weights is not None:
        frozen = backbone_layers(model)
        for layer in frozen:
            layer.trainable = False
        head_epochs = min(cfg.head_epochs, cfg.epochs)
        log.info("phase 1: frozen backbone, head only, up to %d epochs", head_epochs)
        h = _fit_phase(
            model,
            train_ds,
            val_ds,
            lr=cfg.learning_rate,
            epochs=head_epochs,
            initial_epoch=0,
            append=False,
            **common,
        )
        _record_phase(fit, "head", h, cfg.learning_rate)
        start_epoch = len(h["loss"])
        for layer in frozen:
            # BatchNorm stays frozen while fine-tuning (Keras' transfer-learning advice)
            layer.trainable = not isinstance(layer, keras.layers.BatchNormalization)
    if start_epoch < cfg.epochs:
        lr = cfg.finetune_learning_rate if weights is not None else cfg.learning_rate
        phase = "fine-tune" if weights else "train"
        log.info("phase %s: epochs %d-%d, lr %g", phase, start_epoch + 1, cfg.epochs, lr)
        h = _fit_phase(
            model,
            train_ds,
            val_ds,
            lr=lr,
            epochs=cfg.epochs,
            initial_epoch=start_epoch,
            append=start_epoch > 0,
            **common,
        )
        _record_phase(fit, phase, h, lr)
    fit.seconds = time.monotonic() - t_fit
    return fit


def _record_phase(fit: _Fit, phase: str, history: dict, lr: float) -> None:
    fit.phases.append({"phase": phase, "epochs": len(history["loss"]), "lr": lr})
    for k, v in history.items():
        fit.history.setdefault(k, []).extend(float(a) for a in v)


def _reestimate_batchnorm(model, cfg: TrainConfig, arrays: dict) -> dict:
    """With ``cfg.recompute_bn``, recompute BatchNorm statistics on clean training images and
    keep them only if the validation loss does not get worse. Returns the report's facts."""
    from training.evaluate import nll

    if not cfg.recompute_bn:
        return {"recomputed": False}
    (x_tr, _), (x_va, y_va), _ = (arrays[p] for p in data_mod.SPLITS)
    before = predict(model, x_va, cfg.batch_size)
    saved = _bn_state(model)
    t_bn = time.monotonic()
    n_bn = recompute_batchnorm(model, x_tr, cfg.batch_size)
    if not n_bn:
        return {"recomputed": False}
    after = predict(model, x_va, cfg.batch_size)
    loss_b, loss_a = nll(before, y_va), nll(after, y_va)
    acc_b = float((before.argmax(1) == y_va).mean())
    acc_a = float((after.argmax(1) == y_va).mean())
    kept = loss_a <= loss_b + 1e-6
    if not kept:
        _set_bn_state(model, saved)
    log.info(
        "BatchNorm re-estimation: val loss %.4f -> %.4f, acc %.4f -> %.4f (%s)",
        loss_b,
        loss_a,
        acc_b,
        acc_a,
        "kept" if kept else "reverted",
    )
    return {
        "recomputed": bool(kept),
        "layers": n_bn,
        "val_loss_before": loss_b,
        "val_loss_after": loss_a,
        "val_accuracy_before": acc_b,
        "val_accuracy_after": acc_a,
        "seconds": time.monotonic() - t_bn,
    }


def _evaluate(
    model, cfg: TrainConfig, arrays: dict, classes: list[str], baselines: dict
) -> tuple[dict, str | None]:
    """Calibrated test metrics (temperature and threshold from validation), and the
    warning when the CNN is not clearly above a cheap baseline."""
    _, (x_va, y_va), (x_te, y_te) = (arrays[p] for p in data_mod.SPLITS)
    val_probs = predict(model, x_va, cfg.batch_size)
    test_probs = predict(model, x_te, cfg.batch_size)
    evaluation = full_evaluation(
        val_probs, y_va, test_probs, y_te, classes, review_target=cfg.review_target
    )
    warning = baseline_warning(test_probs.argmax(axis=1), y_te, baselines)
    if warning:
        log.warning(warning)
    return evaluation, warning


def _check_validity(
    model, cfg: TrainConfig, arrays: dict, prepared: data_mod.PreparedData
) -> tuple[dict, Guard]:
    """The report's robustness, per-source and guard sections, and the guard to package."""
    validity = clinical_validity(
        model,
        prepared.classes,
        arrays,
        prepared.splits["test"],
        seed=cfg.seed,
        batch_size=cfg.batch_size,
        color_augment=cfg.color_augment,
    )
    guard = validity.pop("guard")
    validity["ood"]["packaged"] = True
    return validity, guard


def _report(
    cfg: TrainConfig,
    prepared: data_mod.PreparedData,
    *,
    name: str,
    version: str,
    size: int,
    fit: _Fit,
    bn_info: dict,
    baselines: dict,
    warning: str | None,
    evaluation: dict,
    validity: dict,
    stain_reference: dict | None,
    wall_seconds: float,
) -> dict:
    """report.json's content: everything a reader needs to audit or repeat the run."""
    from training.report import colour_blind

    classes = prepared.classes
    report = {
        "name": name,
        "version": version,
        "architecture": cfg.arch,
        "classes": classes,
        "input_size": size,
        "created": utc_now(),
        "synthetic": prepared.synthetic if cfg.synthetic is None else cfg.synthetic,
        "config": asdict(cfg),
        "data": {k: v for k, v in prepared.to_json().items() if k != "splits"},
        "training": {
            "epochs_run": len(fit.history.get("loss", [])),
            "best_epoch": fit.best_epoch,
            "phases": fit.phases,
            "fit_seconds": fit.seconds,
            "wall_seconds": wall_seconds,
            "class_weights": {classes[i]: w for i, w in fit.class_weights.items()},
            "batchnorm": bn_info,
            "history": fit.history,
        },
        "baselines": baselines,
        "baseline_warning": warning,
        "evaluation": evaluation,
        **validity,
        "color_augmentation": color_augmentation_facts(cfg.color_augment),
        "stain_normalization": None
        if stain_reference is None
        else {"method": cfg.stain_normalize, "layer": "stain_normalize", **stain_reference},
    }
    report["colour_blind"] = colour_blind(report)
    return report


def _write_report(report: dict, run_dir: Path) -> list[Path]:
    """report.json, report.html and the SVG figures in the run folder; returns their paths."""
    from training import report as report_mod

    figures = report_mod.write_figures(report, run_dir)
    return [
        report_mod.write_json(report, run_dir / "report.json"),
        report_mod.write_html(report, run_dir / "report.html"),
        *figures,
    ]


def _package(
    model,
    report: dict,
    prepared: data_mod.PreparedData,
    guard: Guard,
    out_dir: Path,
    report_files: list[Path],
    arrays: dict[str, tuple[np.ndarray, np.ndarray]],
) -> Path:
    """Write the artifact: the model, its guard, its ONNX graph verified on test images,
    the int8 variant when asked for, the report files, and the manifest."""
    t = report["evaluation"]["test"]
    baselines = report["baselines"]
    cfg = report["config"]
    manifest_fields = {
        "name": report["name"],
        "version": report["version"],
        "architecture": report["architecture"],
        "classes": report["classes"],
        "input_size": report["input_size"],
        "dataset_fingerprint": prepared.fingerprint,
        "split_sizes": prepared.sizes(),
        "metrics": {
            "accuracy": t["accuracy"],
            "macro_f1": t["macro_f1"],
            "weighted_f1": t["weighted_f1"],
            "macro_roc_auc": t["macro_roc_auc"],
            "ece_before": t["ece_before"],
            "ece_after": t["ece_after"],
            "validation_accuracy": t["validation_accuracy"],
            "baseline_colour_accuracy": baselines["colour_stats"]["accuracy"],
            "baseline_thumbnail_accuracy": baselines["thumbnail_8x8"]["accuracy"],
        },
        "temperature": t["temperature"],
        "confidence_threshold": t["confidence_threshold"],
        "heatmap_layer": heatmap_layer(model),
        "created": report["created"],
        "content_hash": "",
        "synthetic": report["synthetic"],
        "extra": {
            "review_rule": (
                f"flag 'needs review' when max(softmax(log(p)/temperature)) < threshold; the "
                f"threshold is the lowest at which validation images kept reach "
                f"{cfg['review_target']:.0%} accuracy"
            ),
            "weights": cfg["weights"] or "none",
            "stain_normalization": report["stain_normalization"],
        },
    }
    x_tr, _ = arrays["train"]
    x_te, y_te = arrays["test"]
    verification = VerificationBatch(
        x_te[:VERIFICATION_IMAGES],
        f"the first {min(len(x_te), VERIFICATION_IMAGES)} images of the test split "
        f"(dataset {prepared.fingerprint[:19]})",
    )
    finish = None
    if cfg.get("int8"):
        calibration = _calibration_sample(x_tr, seed=cfg["seed"])

        def finish(folder: Path, values: dict) -> None:
            from training.quantize import int8_variant

            values["int8"] = int8_variant(
                folder,
                values["onnx"],
                calibration=calibration,
                calibration_source=f"{len(calibration)} random images of the training split",
                test_images=x_te,
                test_labels=y_te,
            )
            log.info("int8 variant %s: %s", values["int8"]["status"], values["int8"])

    artifact_dir, _ = write_artifact(
        model,
        out_dir,
        manifest_fields=manifest_fields,
        verification=verification,
        report_files=report_files,
        guard=guard,
        finish=finish,
    )
    return artifact_dir


#: Training images the int8 variant's activation ranges are calibrated on.
CALIBRATION_IMAGES = 128


def _calibration_sample(x: np.ndarray, *, seed: int) -> np.ndarray:
    """Un-augmented training images, a seeded random sample of them."""
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(x), size=min(len(x), CALIBRATION_IMAGES), replace=False)
    return x[np.sort(pick)]
