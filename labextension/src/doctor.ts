/**
 * The doctor's report in a main-area tab: tl_lab.doctor() run by the server (in the Python that runs JupyterLab),
 * one line per check, each problem with the command that fixes it.
 */
import { MainAreaWidget, ToolbarButton } from '@jupyterlab/apputils';
import { refreshIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import { ICheck, IDoctorReport, runDoctor } from './api';
import { tlLabIcon } from './icons';

const MARKS: Record<string, string> = { ok: '✓', problem: '✗', warning: '!' };

function kind(check: ICheck): 'ok' | 'problem' | 'warning' {
  return check.ok ? 'ok' : check.critical ? 'problem' : 'warning';
}

export class DoctorView extends Widget {
  constructor() {
    super();
    this.addClass('tl-lab-Doctor');
  }

  /** Run the checks and show them; resolves with the report (or null when the request failed). */
  async run(): Promise<IDoctorReport | null> {
    const status = document.createElement('p');
    status.className = 'tl-lab-Doctor-summary tl-lab-Doctor-running';
    status.textContent = 'Running tl_lab.doctor()… (it loads PyTorch and the embedded weights: a few seconds)';
    this.node.replaceChildren(status);
    try {
      const report = await runDoctor();
      this._render(report);
      return report;
    } catch (error) {
      status.className = 'tl-lab-Doctor-summary tl-lab-error';
      status.textContent = `The doctor could not run: ${(error as Error).message}`;
      return null;
    }
  }

  private _render(report: IDoctorReport): void {
    const summary = document.createElement('p');
    summary.className = `tl-lab-Doctor-summary ${report.ok ? 'tl-lab-ok' : 'tl-lab-error'}`;
    summary.textContent = report.ok
      ? report.warnings
        ? `All critical checks passed; ${report.warnings} warning(s) about optional parts.`
        : 'All checks passed.'
      : `${report.problems} problem(s) to fix. Run each fix in a terminal, then restart the kernel.`;
    const where = document.createElement('p');
    where.className = 'tl-lab-Doctor-python';
    where.textContent = `Checked the Python that runs JupyterLab: ${report.python}`;
    const nodes: HTMLElement[] = [summary, where];
    let section: string | null = null;
    let table: HTMLTableElement | null = null;
    for (const check of report.checks) {
      if (check.section !== section || table === null) {
        section = check.section;
        const heading = document.createElement('h3');
        heading.textContent = section;
        table = document.createElement('table');
        table.className = 'tl-lab-Doctor-checks';
        nodes.push(heading, table);
      }
      const row = table.insertRow();
      row.className = `tl-lab-check tl-lab-check-${kind(check)}`;
      const mark = row.insertCell();
      mark.className = 'tl-lab-check-mark';
      mark.textContent = MARKS[kind(check)];
      row.insertCell().textContent = check.name;
      const detail = row.insertCell();
      detail.className = 'tl-lab-check-detail';
      detail.textContent = check.detail;
      if (check.fix && !check.ok) {
        const fix = document.createElement('div');
        fix.className = 'tl-lab-check-fix';
        fix.append('fix: ');
        const code = document.createElement('code');
        code.textContent = check.fix;
        fix.appendChild(code);
        detail.appendChild(fix);
      }
    }
    this.node.replaceChildren(...nodes);
  }
}

/** A main-area tab holding a DoctorView, with a "Run again" button. */
export function createDoctorWidget(): MainAreaWidget<DoctorView> {
  const content = new DoctorView();
  const widget = new MainAreaWidget({ content });
  widget.id = 'tl-lab-doctor';
  widget.title.label = 'tl_lab doctor';
  widget.title.icon = tlLabIcon;
  widget.title.closable = true;
  widget.toolbar.addItem(
    'rerun',
    new ToolbarButton({
      icon: refreshIcon,
      label: 'Run again',
      tooltip: 'Run the checks again',
      onClick: () => void content.run()
    })
  );
  return widget;
}
