-- A small online shop: customers, products, orders and what each order contained.
CREATE TABLE customers (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    city TEXT NOT NULL,
    joined_on DATE NOT NULL
);
CREATE TABLE products (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    category TEXT NOT NULL,
    price REAL NOT NULL
);
CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers(id),
    ordered_on DATE NOT NULL,
    status TEXT NOT NULL
);
CREATE TABLE order_items (
    order_id INTEGER NOT NULL REFERENCES orders(id),
    product_id INTEGER NOT NULL REFERENCES products(id),
    quantity INTEGER NOT NULL,
    PRIMARY KEY (order_id, product_id)
);

INSERT INTO customers VALUES
    (1, 'Amira Haddad', 'Lyon', '2023-02-11'),
    (2, 'Ben Carter', 'Leeds', '2023-05-30'),
    (3, 'Chen Wei', 'Lyon', '2023-07-04'),
    (4, 'Dolores Ruiz', 'Seville', '2023-09-18'),
    (5, 'Emil Novak', 'Brno', '2024-01-07'),
    (6, 'Fatou Diallo', 'Leeds', '2024-02-22'),
    (7, 'Greta Lind', 'Uppsala', '2024-03-15'),
    (8, 'Hiro Tanaka', 'Seville', '2024-04-01');

INSERT INTO products VALUES
    (1, 'Espresso beans 1kg', 'coffee', 24.5),
    (2, 'Filter coffee 500g', 'coffee', 11.0),
    (3, 'Green tea 100g', 'tea', 7.5),
    (4, 'Earl Grey 250g', 'tea', 9.9),
    (5, 'Ceramic mug', 'kitchen', 12.0),
    (6, 'Pour-over dripper', 'kitchen', 29.0),
    (7, 'Burr grinder', 'kitchen', 89.0),
    (8, 'Milk frother', 'kitchen', 45.0),
    (9, 'Dark chocolate bar', 'snacks', 3.2),
    (10, 'Almond biscotti', 'snacks', 5.8);

INSERT INTO orders VALUES
    (1, 1, '2024-01-05', 'delivered'),
    (2, 2, '2024-01-19', 'delivered'),
    (3, 1, '2024-02-02', 'delivered'),
    (4, 3, '2024-02-14', 'delivered'),
    (5, 4, '2024-02-29', 'delivered'),
    (6, 5, '2024-03-03', 'delivered'),
    (7, 2, '2024-03-11', 'delivered'),
    (8, 6, '2024-03-21', 'delivered'),
    (9, 7, '2024-03-28', 'shipped'),
    (10, 1, '2024-04-02', 'shipped'),
    (11, 8, '2024-04-06', 'pending'),
    (12, 3, '2024-04-09', 'pending');

INSERT INTO order_items VALUES
    (1, 1, 2), (1, 9, 3),
    (2, 3, 1), (2, 5, 2),
    (3, 7, 1), (3, 1, 1),
    (4, 4, 2), (4, 10, 4),
    (5, 8, 1),
    (6, 2, 3), (6, 6, 1),
    (7, 1, 1), (7, 9, 5),
    (8, 3, 2), (8, 4, 1), (8, 5, 1),
    (9, 6, 1), (9, 2, 2),
    (10, 8, 1), (10, 10, 2),
    (11, 7, 1),
    (12, 1, 3);
