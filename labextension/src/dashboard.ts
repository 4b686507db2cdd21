/**
 * A new notebook with the TransferLab dashboard: one cell, `from tl_lab.widgets import TransferLab` /
 * `TransferLab()`, run as soon as the kernel is ready.
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import { PathExt } from '@jupyterlab/coreutils';
import { NotebookActions, NotebookPanel } from '@jupyterlab/notebook';

export const DASHBOARD_SOURCE = 'from tl_lab.widgets import TransferLab\n\nlab = TransferLab()\nlab';

const INTRO =
  '# TransferLab\n\nPick a backbone, freeze stages, train on a small dataset and look inside. ' +
  'Everything the dashboard shows comes from a `tl_lab` function you can also call in code ' +
  '(`lab.state.runs` holds the runs you trained).';

/** `TransferLab.ipynb`, or `TransferLab-1.ipynb`… when taken (one listing of the folder, no probing 404s). */
async function freeName(app: JupyterFrontEnd, cwd: string): Promise<string> {
  const listing = await app.serviceManager.contents.get(cwd, { content: true });
  const taken = new Set<string>((listing.content ?? []).map((item: { name: string }) => item.name));
  for (let i = 0; ; i++) {
    const name = i === 0 ? 'TransferLab.ipynb' : `TransferLab-${i}.ipynb`;
    if (!taken.has(name)) {
      return PathExt.join(cwd, name);
    }
  }
}

/** Create the notebook in `cwd`, open it, and run its cell once a kernel is ready. */
export async function newDashboard(app: JupyterFrontEnd, cwd: string): Promise<NotebookPanel> {
  const specs = app.serviceManager.kernelspecs;
  await specs.ready;
  const name = specs.specs?.default ?? 'python3';
  const spec = specs.specs?.kernelspecs[name];
  const path = await freeName(app, cwd);
  await app.serviceManager.contents.save(path, {
    type: 'notebook',
    format: 'json',
    content: {
      nbformat: 4,
      nbformat_minor: 5,
      metadata: {
        kernelspec: { name, display_name: spec?.display_name ?? 'Python 3', language: spec?.language ?? 'python' }
      },
      cells: [
        { cell_type: 'markdown', id: 'tl-lab-intro', metadata: {}, source: INTRO },
        {
          cell_type: 'code',
          id: 'tl-lab-dashboard',
          metadata: {},
          source: DASHBOARD_SOURCE,
          outputs: [],
          execution_count: null
        }
      ]
    }
  });
  const panel = (await app.commands.execute('docmanager:open', { path, factory: 'Notebook' })) as NotebookPanel;
  await panel.sessionContext.ready;
  if (panel.sessionContext.session?.kernel) {
    await NotebookActions.runAll(panel.content, panel.sessionContext);
  }
  return panel;
}
