-- A school: teachers, the courses they teach, students and their grades (0-100).
CREATE TABLE teachers (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    department TEXT NOT NULL
);
CREATE TABLE courses (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    department TEXT NOT NULL,
    credits INTEGER NOT NULL,
    teacher_id INTEGER REFERENCES teachers(id)
);
CREATE TABLE students (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    year INTEGER NOT NULL
);
CREATE TABLE enrollments (
    student_id INTEGER NOT NULL REFERENCES students(id),
    course_id INTEGER NOT NULL REFERENCES courses(id),
    grade INTEGER,
    PRIMARY KEY (student_id, course_id)
);

INSERT INTO teachers VALUES
    (1, 'Dr. Okafor', 'Mathematics'),
    (2, 'Ms. Laurent', 'Languages'),
    (3, 'Mr. Petrov', 'Physics'),
    (4, 'Dr. Silva', 'Mathematics');

INSERT INTO courses VALUES
    (1, 'Algebra', 'Mathematics', 5, 1),
    (2, 'Statistics', 'Mathematics', 4, 4),
    (3, 'Calculus', 'Mathematics', 6, 1),
    (4, 'French', 'Languages', 3, 2),
    (5, 'Spanish', 'Languages', 3, 2),
    (6, 'Mechanics', 'Physics', 5, 3),
    (7, 'Astronomy', 'Physics', 2, NULL);

INSERT INTO students VALUES
    (1, 'Aiko', 1), (2, 'Bruno', 1), (3, 'Chiara', 2), (4, 'Dmitri', 2),
    (5, 'Elif', 3), (6, 'Femi', 3), (7, 'Greta', 1), (8, 'Hamza', 2);

INSERT INTO enrollments VALUES
    (1, 1, 88), (1, 4, 92), (1, 7, 75),
    (2, 1, 64), (2, 6, 71),
    (3, 2, 95), (3, 3, 89), (3, 5, 78), (3, 7, 90),
    (4, 3, 58), (4, 6, 66),
    (5, 2, 81), (5, 4, 85), (5, 5, 79),
    (6, 6, 93), (6, 3, NULL),
    (7, 4, 70),
    (8, 1, 77), (8, 2, 69), (8, 6, 82);
