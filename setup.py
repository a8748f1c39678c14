"""Ships the repository's weights/ folder (vocabularies, the default model) inside the package.

weights/ sits beside vtag/ so a checkout's paths stay short; a wheel has no "beside", so the build copies
the folder to vtag/_weights, where vtag.io.paths looks first.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SHIPPED = Path(__file__).resolve().parent / "weights"


class BuildWithWeights(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads weights/ in the checkout itself
        target = Path(self.build_lib) / "vtag" / "_weights"
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(SHIPPED, target, ignore=shutil.ignore_patterns("__pycache__", ".*"))


setup(cmdclass={"build_py": BuildWithWeights})
