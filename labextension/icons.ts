import { LabIcon } from '@jupyterlab/ui-components';

// A server rack with a spark: the sidebar tab and the launcher items share it.
const computeServerSvg = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path d="M4 3h16a1 1 0 0 1 1 1v5a1 1 0 0 1-1 1H4a1 1 0 0 1-1-1V4a1 1 0 0 1 1-1zm1 2v3h14V5H5zm1 1h2v1H6V6z"/>
    <path d="M4 12h9v2H5v3h8v2H4a1 1 0 0 1-1-1v-5a1 1 0 0 1 1-1zm2 3h2v1H6v-1z"/>
    <path d="M18 11l-3 6h2.5l-1 5 4.5-7h-2.6l1.6-4z"/>
  </g>
</svg>`;

export const computeServerIcon = new LabIcon({
  name: 'jupyter-compute-servers:server',
  svgstr: computeServerSvg
});
