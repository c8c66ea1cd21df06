export {
  loadSafetensors,
  loadSafetensorsAsync,
  readSafetensorsHeader,
  readSafetensorsInBatches,
  readSafetensorsInBatchesAsync,
  saveSafetensors,
  type SafetensorsEntry,
  type SafetensorsHeader,
} from './safetensors'
