from setuptools import find_packages, setup

# twisted/plugins has no __init__.py (it belongs to Twisted's namespace), so it
# is listed by hand; its one file is what makes `twistd moontwist` work.
setup(packages=find_packages(include=["moontwist", "moontwist.*"]) + ["twisted.plugins"])
