export { evaluatePreferences, type PreferenceEval, type PreferenceEvalOptions } from './preference-eval'
export { maskedTokenLogps, modelSequenceStats, type LabelledRows, sequenceLogpSums } from './sequence-logps'
export {
  type GoldEval,
  type GoldEvalOptions,
  type GoldJudge,
  type GoldReward,
  type Sample,
  type SampleOptions,
  evaluateWithGold,
  loadGoldJudge,
  readPrompts,
  referenceSamplesFor,
  sampleCompletions,
  sampleLogRatios,
  scoreSamples,
} from './gold'
