"""Synthetic data generators (NOT real data).

* :mod:`~aqa_framework.synth.diving`: :func:`~aqa_framework.synth.diving.generate_diving`
  writes cartoon dives in the MTL-AQA release format (``aqa data synth``, the
  ``synthetic-diving`` dataset);
* :mod:`~aqa_framework.synth.dives`: what is dived, the judges' marks, score and commentary;
* :mod:`~aqa_framework.synth.render`: the numpy renderer.
"""
