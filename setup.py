from setuptools import find_packages, setup

# twisted/plugins has no __init__.py (it belongs to Twisted's namespace), so it
# is listed by hand; its one file is what makes `twistd moontwist` work.
# package_dir {"": "."} makes `pip install -e .` put this folder on sys.path
# (a plain .pth) instead of setuptools' import finder: Twisted finds plugins by
# scanning twisted/plugins under each sys.path entry, which the finder hides.
setup(
    packages=find_packages(include=["moontwist", "moontwist.*"]) + ["twisted.plugins"],
    package_dir={"": "."},
)
