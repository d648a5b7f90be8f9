# Sourced by the other scripts: make .venv (if missing) with pip and uv in it, using only python3.
# Never installs into the system interpreter (PEP 668), and needs no python3-venv package.
venv_python=.venv/bin/python
if [ ! -x "$venv_python" ]; then
  python3 -m venv .venv >/dev/null 2>&1 || { rm -rf .venv; python3 -m venv --without-pip .venv; }
fi
"$venv_python" -m pip --version >/dev/null 2>&1 || "$venv_python" scripts/bootstrap_pip.py
"$venv_python" -m uv --version >/dev/null 2>&1 || "$venv_python" -m pip install -q --disable-pip-version-check uv
