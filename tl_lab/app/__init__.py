"""The application layer: the ``tl-lab`` command, benchmarks, the lessons bench, doctor, rerun, the lesson catalogue
and the Jupyter server extension. It may import every layer below; nothing imports it (except the lessons' helper
:mod:`tl_lab.app.lesson`, which imports nothing)."""
