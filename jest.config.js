const os = require('os');
const jestJupyterLab = require('@jupyterlab/testing/lib/jest-config');

// Packages shipped as ES modules: jest must transform them (with babel) before running.
const esModules = [
  '@codemirror',
  '@jupyter/ydoc',
  '@jupyter/react-components',
  '@jupyter/web-components',
  '@marijn',
  '@microsoft',
  '@jupyterlab/',
  'color',
  'exenv-es6',
  'lib0',
  'marked',
  'nanoid',
  'vscode-ws-jsonrpc',
  'y-protocols',
  'y-websocket',
  'yjs'
].join('|');

const baseConfig = jestJupyterLab(__dirname);

module.exports = {
  ...baseConfig,
  automock: false,
  // Jest's default is one worker less than the cores: a single worker on a 2-core CI machine,
  // where two run the suites in about two thirds of the time (212 s -> 149 s, measured).
  maxWorkers: Math.max(2, os.cpus().length - 1),
  roots: ['<rootDir>/labextension'],
  testRegex: 'labextension/__tests__/.*\\.spec\\.tsx?$',
  // No junit.xml in the working tree; the default reporter is enough here.
  reporters: ['default'],
  transform: {
    // JupyterLab's raw loader for the SVG icons that @jupyterlab/ui-components imports.
    '\\.svg$': '@jupyterlab/testing/lib/jest-raw-loader.js',
    '\\.tsx?$': ['ts-jest', { tsconfig: 'tsconfig.test.json' }],
    '\\.jsx?$': 'babel-jest'
  },
  transformIgnorePatterns: [`/node_modules/(?!${esModules}).+`]
};
