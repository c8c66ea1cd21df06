export { evaluatePreferences, type PreferenceEval, type PreferenceEvalOptions } from './preference-eval'
