import './base.css';
import './create.css';
