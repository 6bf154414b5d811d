// Resolved by the bundler (and by jest) at build time: the frontend's own version, compared
// with the server extension's to catch a stale or half-upgraded install.
declare const require: (id: string) => any;

export const FRONTEND_VERSION: string = require('../package.json').version;
