"""JupyterLab for the course: ``make lab`` (learner mode) and ``make instructor-lab``; see :mod:`grader.lab.launcher`."""
