export { evaluatePreferences, type PreferenceEval, type PreferenceEvalOptions } from './preference-eval'
export { maskedTokenLogps, sequenceLogpSums } from './sequence-logps'
