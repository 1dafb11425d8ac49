-- Flights between European airports, with the airline that operates each one.
CREATE TABLE airports (
    code TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    city TEXT NOT NULL,
    country TEXT NOT NULL
);
CREATE TABLE airlines (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    country TEXT NOT NULL
);
CREATE TABLE flights (
    id INTEGER PRIMARY KEY,
    airline_id INTEGER NOT NULL REFERENCES airlines(id),
    origin TEXT NOT NULL REFERENCES airports(code),
    destination TEXT NOT NULL REFERENCES airports(code),
    departs_at TEXT NOT NULL,
    duration_min INTEGER NOT NULL,
    price_eur REAL NOT NULL
);

INSERT INTO airports VALUES
    ('LHR', 'Heathrow', 'London', 'United Kingdom'),
    ('CDG', 'Charles de Gaulle', 'Paris', 'France'),
    ('AMS', 'Schiphol', 'Amsterdam', 'Netherlands'),
    ('MAD', 'Barajas', 'Madrid', 'Spain'),
    ('BCN', 'El Prat', 'Barcelona', 'Spain'),
    ('FCO', 'Fiumicino', 'Rome', 'Italy'),
    ('BER', 'Brandenburg', 'Berlin', 'Germany');

INSERT INTO airlines VALUES
    (1, 'Skylark Air', 'United Kingdom'),
    (2, 'Aero Bleu', 'France'),
    (3, 'Tulip Wings', 'Netherlands'),
    (4, 'Iberia Sol', 'Spain');

INSERT INTO flights VALUES
    (1, 1, 'LHR', 'CDG', '2024-06-01 07:10', 75, 89.0),
    (2, 2, 'LHR', 'CDG', '2024-06-01 09:45', 80, 112.0),
    (3, 2, 'CDG', 'FCO', '2024-06-01 11:30', 125, 140.0),
    (4, 3, 'AMS', 'BER', '2024-06-01 08:00', 85, 79.0),
    (5, 3, 'AMS', 'LHR', '2024-06-02 06:50', 70, 95.0),
    (6, 4, 'MAD', 'BCN', '2024-06-02 10:15', 80, 49.0),
    (7, 4, 'BCN', 'FCO', '2024-06-02 13:40', 110, 99.0),
    (8, 1, 'LHR', 'MAD', '2024-06-02 15:05', 145, 130.0),
    (9, 2, 'CDG', 'AMS', '2024-06-03 07:30', 75, 85.0),
    (10, 3, 'AMS', 'BCN', '2024-06-03 12:20', 140, 120.0),
    (11, 2, 'MAD', 'CDG', '2024-06-03 16:45', 120, 105.0),
    (12, 1, 'BER', 'LHR', '2024-06-04 09:00', 110, 115.0),
    (13, 2, 'FCO', 'CDG', '2024-06-04 18:10', 130, 150.0),
    (14, 4, 'BCN', 'MAD', '2024-06-05 08:25', 75, 45.0);
