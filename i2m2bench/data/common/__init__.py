"""Plumbing shared by the dataset families (nothing here knows a family):

* :mod:`~i2m2bench.data.common.disk` -- on-disk splits (memory-mapped ``.npy`` columns streamed
  in index batches) beside the in-memory ones;
* :mod:`~i2m2bench.data.common.manifest` -- checksums and manifests of prepared files, written
  and checked by every ``prepare`` / ``verify``;
* :mod:`~i2m2bench.data.common.family` -- the :class:`DatasetFamily` record and the ``FAMILIES``
  registry (the ``prepare`` / ``verify`` verbs of the CLI);
* :mod:`~i2m2bench.data.common.hf_json` -- JSON / JSON Lines annotations (Hugging Face style);
* :mod:`~i2m2bench.data.common.safe_pickle` -- the allow-list unpickler;
* :mod:`~i2m2bench.data.common.vl_features` -- vision-language feature extraction and reading;
* :mod:`~i2m2bench.data.common.scene_world` / :mod:`~i2m2bench.data.common.scene_backbone` --
  the rendered scene world and frozen backbone both VL twins (VQA-VS, NLVR2) are built from.

This package imports none of its modules: import the one you need.
"""
