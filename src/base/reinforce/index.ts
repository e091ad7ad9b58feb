export { loadTeacher, openTeacher, normalizeRows, imagesToFloat, CHECKPOINT_EXTENSIONS, type Teacher, type TeacherOptions } from './teachers.js';
export { reinforceShards, sampleSeed, sampleAugs, REINFORCE_FORMAT, type ReinforceOptions, type ReinforceSummary, type ShardEvent } from './reinforce.js';
