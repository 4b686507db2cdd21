/** The command ids (the palette, the Launcher and the Lessons panel use them). */
export namespace CommandIDs {
  export const openFirstLesson = 'tl-lab:open-first-lesson';
  export const openLesson = 'tl-lab:open-lesson';
  export const getUpdate = 'tl-lab:get-lesson-update';
  export const showLessons = 'tl-lab:show-lessons';
  export const newDashboard = 'tl-lab:new-dashboard';
  export const doctor = 'tl-lab:doctor';
}
