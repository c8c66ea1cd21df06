// Checks that fail a run before any work (data tokenization, model load): the model folders exist
// and hold a supported architecture, and the device exists in this build. Messages name the flag.
import * as fs from 'node:fs'
import * as path from 'node:path'

import { EdpoInputError } from '../core/errors'
import { parseModelConfig } from '../model/config'
import { readConfigJson } from '../model/checkpoint-files'
import { runtime } from '../core/runtime'

// "org/name" with no such folder here: almost surely a Hugging Face Hub id.
const HUB_ID = /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/

/** A Hugging Face model folder with a config.json of a supported model_type. */
export function checkModelFolder(dir: string, flag: string): void {
  if (!fs.existsSync(dir)) {
    if (HUB_ID.test(dir))
      throw new EdpoInputError(
        `${flag} ${dir}: no such folder. A Hub id is resolved by edpo's commands; through the API, pass the options through resolveHubOptions() first (or fetch it: \`huggingface-cli download ${dir} --local-dir ./${path.basename(dir)}\`)`,
      )
    throw new EdpoInputError(`${flag} ${dir}: no such folder (a Hugging Face model folder: config.json, *.safetensors, tokenizer.json)`)
  }
  if (!fs.statSync(dir).isDirectory())
    throw new EdpoInputError(`${flag} ${dir}: not a folder (a Hugging Face model folder: config.json, *.safetensors, tokenizer.json)`)
  if (!fs.existsSync(path.join(dir, 'config.json'))) throw new EdpoInputError(`${flag} ${dir}: no config.json, so not a Hugging Face model folder`)
  parseModelConfig(readConfigJson(dir), path.join(dir, 'config.json'))
}

/** 'cpu' always; 'cuda[:N]' only in a CUDA build with a device there. */
export function checkDevice(device: string): void {
  if (!device.startsWith('cuda')) return
  const r = runtime()
  if (!r.cudaBuild)
    throw new EdpoInputError(
      `--device ${device}: this edpo build is CPU-only. For GPUs, build from source against a CUDA libtorch: EDPO_CUDA=1 npm rebuild edpo (see docs/install.md)`,
    )
  if (!r.cudaAvailable)
    throw new EdpoInputError(`--device ${device}: this is a CUDA build, but libtorch sees no CUDA device (check the driver and CUDA_VISIBLE_DEVICES)`)
}
