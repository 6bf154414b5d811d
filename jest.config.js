const jestJupyterLab = require('@jupyterlab/testing/lib/jest-config');

const esModules = [
  '@codemirror',
  '@jupyter/ydoc',
  '@jupyter/react-components',
  '@jupyter/web-components',
  '@microsoft/fast',
  '@jupyterlab/',
  'exenv-es6',
  'lib0',
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
  roots: ['<rootDir>/labextension'],
  testRegex: 'labextension/.*/.*.spec.ts[x]?$',
  transform: {
    '\\.tsx?$': ['ts-jest', { tsconfig: 'tsconfig.test.json' }],
    '\\.jsx?$': 'babel-jest'
  },
  transformIgnorePatterns: [`/node_modules/(?!${esModules}).+`]
};
