"""Video input: readers (decord, JPEG folders), temporal sampling, transforms, frame cache.

Modules:

* :mod:`~aqa_framework.video.readers`: :class:`FrameReader` for video files (decord) and
  JPEG frame folders (PIL), frames by 0-based index;
* :mod:`~aqa_framework.video.sampling`: windows (fixed length or the whole video) and clip
  offsets (C3D-AVG clips, explicit clip starts, MSCADC spread, uniform);
* :mod:`~aqa_framework.video.transforms`: resize / crop / flip / normalise on uint8 batches;
* :mod:`~aqa_framework.video.cache`: the decoded-frame cache;
* :mod:`~aqa_framework.video.params`: :class:`VideoParams`, the shared dataset parameters;
* :mod:`~aqa_framework.video.loader`: :class:`ClipLoader`, which joins the above;
* :mod:`~aqa_framework.video.dataset`: :class:`ClipDataset`, a base for dataset plugins.

Nothing is imported here, so ``import aqa_framework.video`` stays cheap.
"""
