/**
 * Playwright configuration for the browser tests, as in the JupyterLab extension template,
 * with Debian's Chromium instead of a downloaded browser.
 */
const baseConfig = require('@jupyterlab/galata/lib/playwright-config');

const os = require('os');
const path = require('path');

const port = process.env.UI_TESTS_PORT || '8899';
// A second server with the slurm cloud and a one-node Slurm cluster, for slurm.spec.ts only;
// it writes how to reach the cluster's login node to this file.
const slurmPort = process.env.UI_TESTS_SLURM_PORT || '8898';
process.env.UI_TESTS_SLURM_INFO =
  process.env.UI_TESTS_SLURM_INFO ||
  path.join(os.tmpdir(), `jcs-ui-slurm-${slurmPort}.json`);
// A third server with the openstack cloud on the fake OpenStack, for openstack.spec.ts only.
const openstackPort = process.env.UI_TESTS_OPENSTACK_PORT || '8897';
// A fourth in team mode, its user an admin, for team.spec.ts only; it writes where its store
// is (for the test's second owner) to this file.
const teamPort = process.env.UI_TESTS_TEAM_PORT || '8896';
process.env.UI_TESTS_TEAM_INFO =
  process.env.UI_TESTS_TEAM_INFO ||
  path.join(os.tmpdir(), `jcs-ui-team-${teamPort}.json`);

module.exports = {
  ...baseConfig,
  // Never open the HTML report in a browser; keep it for reading after a failure.
  reporter: [['list'], ['html', { open: 'never' }]],
  // One JupyterLab server for all tests; 2 cores here, so no parallel workers.
  workers: 1,
  retries: process.env.CI ? 1 : 0,
  use: {
    ...baseConfig.use,
    // Video needs Playwright's own ffmpeg, which is not downloaded here: keep traces instead.
    video: 'off',
    trace: 'retain-on-failure',
    screenshot: 'only-on-failure',
    baseURL: `http://127.0.0.1:${port}`,
    launchOptions: {
      executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run'
      ]
    }
  },
  // Screenshots named without the project (there were none before the slurm project).
  snapshotPathTemplate:
    '{testDir}/{testFilePath}-snapshots/{arg}{-snapshotSuffix}{ext}',
  expect: {
    toHaveScreenshot: { maxDiffPixelRatio: 0.01 },
    toMatchSnapshot: { maxDiffPixelRatio: 0.01 }
  },
  webServer: [
    {
      command:
        'jupyter lab --config jupyter_server_test_config.py --allow-root',
      url: `http://127.0.0.1:${port}/lab`,
      env: {
        ...process.env,
        UI_TESTS_PORT: port,
        UI_TESTS_SLURM_INFO: '',
        UI_TESTS_TEAM_INFO: ''
      },
      timeout: 120 * 1000,
      reuseExistingServer: false,
      // Let the server exit cleanly, so that it removes its temporary directories.
      gracefulShutdown: { signal: 'SIGTERM', timeout: 10000 },
      stdout: 'ignore',
      stderr: 'pipe'
    },
    {
      command:
        'jupyter lab --config jupyter_server_test_config.py --allow-root',
      url: `http://127.0.0.1:${slurmPort}/lab`,
      env: {
        ...process.env,
        UI_TESTS_PORT: slurmPort,
        UI_TESTS_SLURM_INFO: process.env.UI_TESTS_SLURM_INFO,
        UI_TESTS_TEAM_INFO: ''
      },
      timeout: 120 * 1000,
      reuseExistingServer: false,
      // Slurm's daemons take a few seconds to stop.
      gracefulShutdown: { signal: 'SIGTERM', timeout: 30000 },
      stdout: 'ignore',
      stderr: 'pipe'
    },
    {
      command:
        'jupyter lab --config jupyter_server_test_config.py --allow-root',
      url: `http://127.0.0.1:${openstackPort}/lab`,
      env: {
        ...process.env,
        UI_TESTS_PORT: openstackPort,
        UI_TESTS_SLURM_INFO: '',
        UI_TESTS_TEAM_INFO: '',
        UI_TESTS_OPENSTACK: '1'
      },
      timeout: 120 * 1000,
      reuseExistingServer: false,
      gracefulShutdown: { signal: 'SIGTERM', timeout: 10000 },
      stdout: 'ignore',
      stderr: 'pipe'
    },
    {
      command:
        'jupyter lab --config jupyter_server_test_config.py --allow-root',
      url: `http://127.0.0.1:${teamPort}/lab`,
      env: {
        ...process.env,
        UI_TESTS_PORT: teamPort,
        UI_TESTS_SLURM_INFO: '',
        UI_TESTS_TEAM_INFO: process.env.UI_TESTS_TEAM_INFO
      },
      timeout: 120 * 1000,
      reuseExistingServer: false,
      gracefulShutdown: { signal: 'SIGTERM', timeout: 10000 },
      stdout: 'ignore',
      stderr: 'pipe'
    }
  ],
  projects: [
    { name: 'lab', testIgnore: /(slurm|openstack|team|hub)\.spec\.ts/ },
    {
      name: 'slurm',
      testMatch: /slurm\.spec\.ts/,
      use: { baseURL: `http://127.0.0.1:${slurmPort}` }
    },
    {
      name: 'openstack',
      testMatch: /openstack\.spec\.ts/,
      use: { baseURL: `http://127.0.0.1:${openstackPort}` }
    },
    {
      name: 'team',
      testMatch: /team\.spec\.ts/,
      use: { baseURL: `http://127.0.0.1:${teamPort}` }
    },
    // Two users through a real JupyterHub: hub.spec.ts starts `jupyter compute-servers
    // team-try` itself (on a free port, or UI_TESTS_HUB_PORT) and stops it; none of the servers above.
    { name: 'hub', testMatch: /hub\.spec\.ts/ }
  ]
};
