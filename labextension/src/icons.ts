import { LabIcon } from '@jupyterlab/ui-components';

/** Stacked layers (a pretrained backbone) with a new head on top: the kit's icon. */
const svg = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="16">
  <g class="jp-icon3" fill="#616161">
    <path d="M12 2 2 7l10 5 10-5-10-5Z"/>
    <path d="m4.3 10.9-2.3 1.1 10 5 10-5-2.3-1.1L12 14.8z" opacity=".75"/>
    <path d="m4.3 15.9-2.3 1.1 10 5 10-5-2.3-1.1L12 19.8z" opacity=".5"/>
  </g>
  <circle class="jp-icon-warn0" fill="#f57c00" cx="19" cy="5" r="3"/>
</svg>`;

export const tlLabIcon = new LabIcon({ name: 'tl-lab:icon', svgstr: svg });
