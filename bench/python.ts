// The python3 that runs the PyTorch baselines: EDPO_BENCH_PYTHON when set (the GPU machine's
// venv), else Debian's /usr/bin/python3 (python3-torch), else python3 on PATH.
import * as fs from 'node:fs'

export function torchPython(): string {
  const given = process.env.EDPO_BENCH_PYTHON
  if (given !== undefined && given !== '') return given
  return fs.existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3'
}
