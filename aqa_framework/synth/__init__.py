"""Synthetic data generators (NOT real data).

* :mod:`~aqa_framework.synth.diving`: :func:`~aqa_framework.synth.diving.generate_diving`
  writes cartoon dives in the MTL-AQA release format (``aqa data synth``, the
  ``synthetic-diving`` dataset);
* :mod:`~aqa_framework.synth.dives`: what is dived, the judges' marks, score and commentary;
* :mod:`~aqa_framework.synth.render`: the numpy renderer;
* :mod:`~aqa_framework.synth.jigsaws`: cartoon surgical trials in MUSDL's JIGSAWS format
  (``synthetic-jigsaws``, ``aqa data synth --kind jigsaws``);
* :mod:`~aqa_framework.synth.routines`: long routines as clip-feature files
  (``synthetic-routines``);
* :mod:`~aqa_framework.synth.pairs`: (better, worse) pairs of routines (``synthetic-pairs``);
* :mod:`~aqa_framework.synth.first_use`: generation on first use, shared by the datasets.
"""
