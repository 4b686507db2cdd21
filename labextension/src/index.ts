/**
 * Transfer Learning Lab for JupyterLab: a Launcher card that opens the first lesson (copying the lessons into
 * `tl_lab_lessons/` when they are not in the workspace yet), a "Lessons" sidebar, and palette commands to open a
 * lesson, start a notebook with the TransferLab dashboard, and run tl_lab.doctor().
 *
 * The server half (tl_lab/jupyter_server) lists and copies the lessons and runs the doctor.
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette, InputDialog, MainAreaWidget, Notification } from '@jupyterlab/apputils';
import { IDefaultFileBrowser } from '@jupyterlab/filebrowser';
import { ILauncher } from '@jupyterlab/launcher';

import { copyLessons, ICatalog, listLessons, openLesson } from './api';
import { CommandIDs } from './commands';
import { newDashboard } from './dashboard';
import { createDoctorWidget, DoctorView } from './doctor';
import { tlLabIcon } from './icons';
import { LessonsPanel } from './panel';

const CATEGORY = 'Transfer Learning Lab';
const LAUNCHER_CATEGORY = 'Transfer Learning';

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function describeCopy(copied: string[], folder: string): string {
  return `Copied ${copied.length} lesson${copied.length === 1 ? '' : 's'} into ${folder || 'the top folder'}/`;
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'tl-lab:plugin',
  description: 'Transfer Learning Lab: Launcher card, Lessons panel, dashboard and doctor commands.',
  autoStart: true,
  optional: [ILauncher, ICommandPalette, ILayoutRestorer, IDefaultFileBrowser],
  activate: (
    app: JupyterFrontEnd,
    launcher: ILauncher | null,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null,
    browser: IDefaultFileBrowser | null
  ) => {
    const { commands, shell } = app;
    const cwd = () => browser?.model.path ?? '';

    const panel = new LessonsPanel({ commands, cwd });
    shell.add(panel, 'left', { rank: 650 });
    restorer?.add(panel, 'tl-lab-lessons');
    app.serviceManager.contents.fileChanged.connect((_, change) => {
      const path = change.newValue?.path ?? change.oldValue?.path ?? '';
      if (path.endsWith('.ipynb') || change.type === 'delete' || change.type === 'rename') {
        panel.scheduleRefresh();
      }
    });

    /** Open lesson `name` (default: the first), copying the lessons into the workspace when needed. */
    async function open(name: string | null, hint: string): Promise<void> {
      try {
        const result = await openLesson(name, hint);
        if (result.copied.length > 0) {
          Notification.success(describeCopy(result.copied, result.folder), { autoClose: 6000 });
        }
        await commands.execute('docmanager:open', { path: result.path, factory: 'Notebook' });
        await panel.setFolder(result.folder);
      } catch (error) {
        Notification.error(`Could not open the lesson: ${errorMessage(error)}`, { autoClose: false });
      }
    }

    commands.addCommand(CommandIDs.openFirstLesson, {
      label: args => (args['isLauncher'] ? 'Transfer Learning Lab' : 'Open the First Lesson'),
      caption: 'Open the first Transfer Learning Lab lesson (copying the lessons here if needed)',
      icon: args => (args['isPalette'] ? undefined : tlLabIcon),
      execute: args => open(null, (args['cwd'] as string | undefined) ?? panel.hint)
    });

    commands.addCommand(CommandIDs.openLesson, {
      label: 'Open a Lesson…',
      caption: 'Open a Transfer Learning Lab lesson',
      execute: async args => {
        const hint = (args['path'] as string | undefined) ?? panel.hint;
        let name = args['name'] as string | undefined;
        if (!name) {
          let catalog: ICatalog;
          try {
            catalog = await listLessons(hint);
          } catch (error) {
            Notification.error(`Could not list the lessons: ${errorMessage(error)}`, { autoClose: false });
            return;
          }
          const labels = catalog.lessons.map(
            l => `${l.number === null ? '' : String(l.number).padStart(2, '0') + ' '}${l.title}${l.completed ? ' ✓' : ''}`
          );
          const choice = await InputDialog.getItem({ title: 'Open a lesson', items: labels });
          if (!choice.button.accept || choice.value === null) {
            return;
          }
          name = catalog.lessons[labels.indexOf(choice.value)]?.name;
          if (!name) {
            return;
          }
        }
        await open(name, hint);
      }
    });

    commands.addCommand(CommandIDs.getUpdate, {
      label: 'Get the Packaged Version of a Lesson as a Separate Copy',
      execute: async args => {
        const name = args['name'] as string;
        try {
          const folder = panel.catalog?.folder ?? (await listLessons(panel.hint)).folder;
          if (folder === null) {
            return open(name, panel.hint);
          }
          const result = await copyLessons(folder, { lessons: [name], updates: true });
          await panel.refresh();
          if (result.updates.length > 0) {
            Notification.success(`Saved the packaged version as ${result.updates[0]}; your copy is unchanged`, {
              autoClose: 6000
            });
            await commands.execute('docmanager:open', { path: result.updates[0], factory: 'Notebook' });
          }
        } catch (error) {
          Notification.error(`Could not copy the lesson: ${errorMessage(error)}`, { autoClose: false });
        }
      }
    });

    commands.addCommand(CommandIDs.showLessons, {
      label: 'Show the Lessons Panel',
      execute: () => shell.activateById(panel.id)
    });

    commands.addCommand(CommandIDs.newDashboard, {
      label: args => (args['isLauncher'] ? 'TransferLab Dashboard' : 'New Notebook with the TransferLab Dashboard'),
      caption: 'A new notebook that runs `TransferLab()`: pick a backbone, freeze, train, look inside',
      icon: args => (args['isPalette'] ? undefined : tlLabIcon),
      execute: async args => {
        try {
          await newDashboard(app, (args['cwd'] as string | undefined) ?? cwd());
        } catch (error) {
          Notification.error(`Could not create the notebook: ${errorMessage(error)}`, { autoClose: false });
        }
      }
    });

    let doctor: MainAreaWidget<DoctorView> | null = null;
    commands.addCommand(CommandIDs.doctor, {
      label: 'Check My Setup (tl_lab.doctor)',
      caption: 'Run tl_lab.doctor(): versions, device, widget front-ends, weights, each problem with its fix',
      execute: () => {
        if (doctor === null || doctor.isDisposed) {
          doctor = createDoctorWidget();
          shell.add(doctor, 'main');
        }
        shell.activateById(doctor.id);
        return doctor.content.run();
      }
    });

    if (launcher) {
      const args = { isLauncher: true };
      launcher.add({ command: CommandIDs.openFirstLesson, args, category: LAUNCHER_CATEGORY, rank: 0, categoryRank: 10 });
      launcher.add({ command: CommandIDs.newDashboard, args, category: LAUNCHER_CATEGORY, rank: 1, categoryRank: 10 });
    }
    if (palette) {
      for (const command of [
        CommandIDs.openLesson,
        CommandIDs.openFirstLesson,
        CommandIDs.showLessons,
        CommandIDs.newDashboard,
        CommandIDs.doctor
      ]) {
        palette.addItem({ command, category: CATEGORY, args: { isPalette: true } });
      }
    }
  }
};

export default plugin;
