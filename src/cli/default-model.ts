// The embedded stories260K model's path, for CLI entry points other than main.ts (main.ts runs on import, so it
// cannot be imported for its DEFAULT_MODEL). Same path as main.ts's.

import { fileURLToPath } from 'node:url';

export const DEFAULT_MODEL = fileURLToPath(new URL('../../public/models/stories260K.gguf', import.meta.url));
