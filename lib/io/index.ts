export {
  loadSafetensors,
  loadSafetensorsAsync,
  readSafetensorsHeader,
  saveSafetensors,
  type SafetensorsEntry,
  type SafetensorsHeader,
} from './safetensors'
